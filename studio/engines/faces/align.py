"""Face alignment to the FFHQ template and paste-back through the inverse transform.

Pure numpy/OpenCV: no model here. Coordinates are pixel centres (x, y), as OpenCV's warpAffine uses.
The restoration networks were trained on faces aligned to the FFHQ 512x512 five-point template, so
a face must be warped onto exactly these points before restoration, and warped back afterwards.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

FACE_SIZE = 512

FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],  # eye on the image's left (the subject's right eye)
        [318.90277, 240.19360],  # eye on the image's right
        [256.63416, 314.01935],  # nose tip
        [201.26117, 371.41043],  # mouth corner on the image's left
        [313.08905, 371.15118],  # mouth corner on the image's right
    ]
)
"""Where the five landmarks sit in a 512x512 FFHQ-aligned face (the template GFPGAN/CodeFormer use)."""


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation taking `src` points onto `dst` (2x3).

    Writing 2-D points as complex numbers, a similarity is z -> a*z + b; the least-squares a for
    centred points is <src, dst> / <src, src> (Umeyama 1991 without reflections). A similarity,
    not a full affine, keeps the face's proportions, which the networks rely on.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    zs = (src[:, 0] - src_mean[0]) + 1j * (src[:, 1] - src_mean[1])
    zd = (dst[:, 0] - dst_mean[0]) + 1j * (dst[:, 1] - dst_mean[1])
    norm = np.vdot(zs, zs).real
    if norm < 1e-12:
        raise ValueError("landmarks coincide: cannot estimate an alignment")
    a = np.vdot(zs, zd) / norm
    linear = np.array([[a.real, -a.imag], [a.imag, a.real]])
    offset = dst_mean - linear @ src_mean
    return np.hstack([linear, offset[:, None]])


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_transform(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix."""
    linear_inv = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear_inv, (-linear_inv @ matrix[:, 2])[:, None]])


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = FACE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face with these 5 landmarks onto the FFHQ template: (size x size crop, 2x3 image->crop matrix).

    Outside the image the crop mirrors the border, which restores better than a flat colour. A face
    larger than the crop is first shrunk with area averaging, so the network sees no aliasing.
    """
    import cv2

    matrix = similarity_transform(landmarks, FFHQ_TEMPLATE_512 * (size / FACE_SIZE))
    warp_from, to_crop = image, matrix
    crop_per_source = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if crop_per_source < 0.8:
        corners = apply_transform(invert_transform(matrix), [[0, 0], [size, 0], [0, size], [size, size]])
        margin = 4.0 / crop_per_source
        x0 = max(0, int(corners[:, 0].min() - margin))
        y0 = max(0, int(corners[:, 1].min() - margin))
        x1 = min(image.shape[1], int(corners[:, 0].max() + margin) + 1)
        y1 = min(image.shape[0], int(corners[:, 1].max() + margin) + 1)
        if x1 > x0 and y1 > y0:
            region = image[y0:y1, x0:x1]
            small = (max(1, round(region.shape[1] * crop_per_source)), max(1, round(region.shape[0] * crop_per_source)))
            warp_from = cv2.resize(region, small, interpolation=cv2.INTER_AREA)
            sx, sy = small[0] / region.shape[1], small[1] / region.shape[0]
            # small-image pixel centres -> source pixels: x = (x_small + 0.5) / sx - 0.5 + x0
            small_to_source = np.array([[1 / sx, 0, 0.5 / sx - 0.5 + x0], [0, 1 / sy, 0.5 / sy - 0.5 + y0], [0, 0, 1]])
            to_crop = matrix @ small_to_source
    crop = cv2.warpAffine(warp_from, to_crop, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return crop, matrix


def rescale_transform(matrix: np.ndarray, scale_y: float, scale_x: float) -> np.ndarray:
    """Turn a source-image->crop matrix into an output-image->crop matrix for an output `scale` times larger.

    Pixel centres map as x_out = (x_src + 0.5) * scale - 0.5, so the scale may be fractional and may
    differ slightly between axes (rounded output sizes).
    """
    out_to_src = np.array(
        [
            [1.0 / scale_x, 0.0, 0.5 / scale_x - 0.5],
            [0.0, 1.0 / scale_y, 0.5 / scale_y - 0.5],
            [0.0, 0.0, 1.0],
        ]
    )
    return matrix @ out_to_src


@lru_cache(maxsize=4)
def face_mask(size: int = FACE_SIZE) -> np.ndarray:
    """Soft blending mask over the aligned crop: 1 inside, fading to 0 towards the crop's edges.

    Eroding then blurring in crop space makes the seam width proportional to the face, whatever
    the face's size in the output.
    """
    import cv2

    margin = max(1, size // 16)
    mask = np.zeros((size, size), np.float32)
    mask[margin:-margin, margin:-margin] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=size / 40)
    mask[mask < 1e-3] = 0.0
    mask.setflags(write=False)
    return mask


def paste_face(background: np.ndarray, face: np.ndarray, out_to_crop: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Blend a restored aligned `face` back into `background` through the inverse of `out_to_crop`.

    Returns a new image; pixels outside the warped face square are left exactly as they were.
    `strength` scales the mask: 1 pastes the restored face, 0 keeps the background face.
    """
    import cv2

    out = background.copy()
    if strength <= 0:
        return out
    height, width = background.shape[:2]
    size = face.shape[0]
    mask = face_mask(size)

    # A face smaller in the output than in the crop is first shrunk with area averaging (no aliasing).
    out_per_crop = 1.0 / np.sqrt(abs(np.linalg.det(out_to_crop[:, :2])))
    if out_per_crop < 1.0:
        small = max(8, round(size * out_per_crop))
        ratio = small / size
        face = cv2.resize(face, (small, small), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (small, small), interpolation=cv2.INTER_AREA)
        out_to_crop = np.diag([ratio, ratio]) @ out_to_crop
        size = small

    corners = apply_transform(invert_transform(out_to_crop), [[0, 0], [size, 0], [0, size], [size, size]])
    x0 = max(0, int(np.floor(corners[:, 0].min())) - 2)
    y0 = max(0, int(np.floor(corners[:, 1].min())) - 2)
    x1 = min(width, int(np.ceil(corners[:, 0].max())) + 2)
    y1 = min(height, int(np.ceil(corners[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return out
    roi_to_crop = out_to_crop @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    dsize = (x1 - x0, y1 - y0)
    flags_face = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    flags_mask = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(face, roi_to_crop, dsize, flags=flags_face, borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(mask, roi_to_crop, dsize, flags=flags_mask, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    weight = (np.clip(weight, 0.0, 1.0) * strength)[..., None]
    region = out[y0:y1, x0:x1]
    region += weight * (np.clip(warped, 0.0, 1.0) - region)
    return out
