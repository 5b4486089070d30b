"""`studio video`: restore a clip frame by frame with its sound, without flicker, resumable.

One module per concern: `probe` (what the clip is; the up-front checks), `plan` (the restore plan's checks
plus the clip's, the encoder's and the output's), `frames` (decode and colour conversion), `temporal`
(optical-flow blending and the flicker measure), `encode` (segment encoders in a worker thread),
`workdir` (the resumable state), `mux` (the final file with the copied streams), `run` (the loop).
`options` holds the command's own options; it and this package import no heavy library, so `--help`
stays instant.
"""
