"""Face restoration on top of any background engine: detect, align, restore (GFPGAN, CodeFormer,
RestoreFormer), paste back. Heavy libraries load only when a FaceRestorer is built and used.
"""

from studio.engines.faces.restorer import FaceRestorer, FaceResult

__all__ = ["FaceRestorer", "FaceResult"]
