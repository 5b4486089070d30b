"""`studio train`: fine-tune a super-resolution network on an archive's own images.

Real-ESRGAN's recipe (L1 + VGG perceptual + U-Net discriminator GAN, EMA generator, Adam 1e-4, pairs made
on the fly by the degradation model) over any spandrel network, with exact resume, validation and a
safetensors result that `studio restore --model` reads.
"""
