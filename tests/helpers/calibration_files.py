"""Calibration files of other tools, written for tests: OpenCV FileStorage text (YAML or XML)
as OpenCV writes it, and cameras in MATLAB's (Label3D / DANNCE) convention for savemat."""

from __future__ import annotations

import numpy as np

from mvcore.geometry import CameraGroup


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else f"{float(x):.0f}."


def opencv_text(fields: dict, kind: str) -> str:
    """An OpenCV FileStorage file, ``kind`` "yml" or "xml": ``fields`` maps keys to numpy
    arrays (written as opencv-matrix; 3-D arrays as multi-channel, 1-D as opencv-nd-matrix),
    ints, strings or (width, height) tuples (cv::Size)."""
    yml = ["%YAML:1.0", "---"]
    xml = ['<?xml version="1.0"?>', "<opencv_storage>"]
    for key, value in fields.items():
        if isinstance(value, np.ndarray):
            dt = "i" if value.dtype.kind == "i" else "d"
            data = [str(int(v)) if dt == "i" else _num(v) for v in value.ravel()]
            if value.ndim == 1:
                head = {"sizes": [str(value.shape[0])]}
                tag = "opencv-nd-matrix"
            else:
                head = {"rows": value.shape[0], "cols": value.shape[1]}
                tag = "opencv-matrix"
                if value.ndim == 3:
                    dt = f'"{value.shape[2]}{dt}"'
            yml.append(f"{key}: !!{tag}")
            xml.append(f'<{key} type_id="{tag}">')
            for name, item in head.items():
                text = f"[ {', '.join(item)} ]" if isinstance(item, list) else str(item)
                yml.append(f"   {name}: {text}")
                xml.append(f"  <{name}>{' '.join(item) if isinstance(item, list) else item}"
                           f"</{name}>")
            rows = [data[i:i + 4] for i in range(0, len(data), 4)]  # wrapped as OpenCV does
            yml += [f"   dt: {dt}", "   data: [ " + ",\n       ".join(", ".join(r) for r in rows)
                    + " ]"]
            xml += [f"  <dt>{dt}</dt>", "  <data>\n    " + "\n    ".join(" ".join(r) for r in rows)
                    + f"</data></{key}>"]
        elif isinstance(value, str):
            yml.append(f'{key}: "{value}"')
            xml.append(f"<{key}>{value}</{key}>")
        elif isinstance(value, tuple):  # cv::Size
            yml.append(f"{key}: [ {value[0]}, {value[1]} ]")
            xml.append(f"<{key}>\n  {value[0]} {value[1]}</{key}>")
        else:
            yml.append(f"{key}: {value}")
            xml.append(f"<{key}>{value}</{key}>")
    xml.append("</opencv_storage>")
    return "\n".join(yml if kind == "yml" else xml) + "\n"


def opencv_camera(group: CameraGroup, i: int) -> dict:
    """Camera ``i`` under the key names of OpenCV's calibration sample, with its extrinsics."""
    return {"image_width": int(group.sizes[i, 0]), "image_height": int(group.sizes[i, 1]),
            "camera_matrix": group.intrinsics[i],
            "distortion_coefficients": group.distortions[i][None],
            "R": group.rotation_matrices()[i], "T": group.translations[i][:, None]}


def matlab_camera(group: CameraGroup, i: int) -> dict:
    """Camera ``i`` in MATLAB's convention: K transposed with a 1-based principal point,
    r = R^T (row vectors), t 1x3, RDistort k1 k2 k3, TDistort p1 p2."""
    k = group.intrinsics[i].copy()
    k[:2, 2] += 1.0
    k1, k2, p1, p2, k3 = group.distortions[i]
    return {"K": k.T, "RDistort": np.array([[k1, k2, k3]]), "TDistort": np.array([[p1, p2]]),
            "r": group.rotation_matrices()[i].T, "t": group.translations[i][None]}
