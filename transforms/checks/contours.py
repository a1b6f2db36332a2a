"""A class's mask -> polygons, for formats whose masks are polygons (Azure AutoML instance
segmentation): OpenCV's border following, simplified by Douglas-Peucker.

- Rings follow the outer border of each connected region (8-connected; `cv2.RETR_EXTERNAL`):
  a polygon list has no form for holes, so a hole is filled.
- Vertices are the centres of the border pixels (OpenCV's convention), so a traced region is
  about half a pixel smaller on every side than its pixels: its area is the pixel count less
  about half the perimeter.
- `tolerance` (pixels) is `approxPolyDP`'s epsilon: no vertex dropped lies farther than that from
  the simplified ring. 1.0 keeps the outline within a pixel with a fraction of the vertices.
- A region too thin to enclose any area (one pixel, a one-pixel line) becomes the rectangle
  around its pixels' edges, so no labelled pixel is lost from the output.
"""

from __future__ import annotations

import numpy as np

DEFAULT_TOLERANCE = 1.0


def trace(foreground: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> list[list[float]]:
    """A boolean (height, width) mask -> rings [x0, y0, x1, y1, ...] normalized to [0, 1]."""
    import cv2  # here, not at module level: a worker that traces no mask never pays for OpenCV

    height, width = foreground.shape
    contours, _ = cv2.findContours(np.ascontiguousarray(foreground, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    rings = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.float64)
        simplified = cv2.approxPolyDP(contour, float(tolerance), True).reshape(-1, 2).astype(np.float64) if tolerance > 0 else points
        if len(simplified) < 3 or cv2.contourArea(simplified.astype(np.float32)) == 0:
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0) + 1  # the pixels' far edges
            simplified = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        else:
            simplified = simplified + 0.5  # a pixel's centre, in edge coordinates
        ring = np.empty(simplified.size)
        ring[0::2] = np.clip(simplified[:, 0] / width, 0.0, 1.0)
        ring[1::2] = np.clip(simplified[:, 1] / height, 0.0, 1.0)
        rings.append([float(v) for v in ring])
    return rings
