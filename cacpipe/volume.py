"""CT volumes and label maps with their geometry, and their NIfTI / SimpleITK round trips.

Arrays are (z, y, x). Geometry follows ITK: ``spacing_zyx`` in mm, ``origin_xyz`` = LPS
position (mm) of voxel (0, 0, 0), ``direction`` = 3x3 row-major ITK direction matrix whose
columns are the patient-space directions of the x, y and z voxel axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import GeometryError, InputDataError
from .units import voxel_volume_mm3, xyz_to_zyx, zyx_to_xyz

IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass
class Volume:
    """A 3D image (HU for CT, integer ids for label maps) with its patient-space geometry."""

    array: np.ndarray  # (z, y, x)
    spacing_zyx: tuple[float, float, float]
    origin_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY_DIRECTION
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise GeometryError(f"a volume must be 3D (z, y, x); got shape {self.array.shape}")
        self.spacing_zyx = tuple(float(s) for s in self.spacing_zyx)  # type: ignore[assignment]
        self.origin_xyz = tuple(float(s) for s in self.origin_xyz)  # type: ignore[assignment]
        self.direction = tuple(float(s) for s in self.direction)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_mm3(self) -> float:
        return voxel_volume_mm3(self.spacing_zyx)

    def with_array(self, array: np.ndarray) -> Volume:
        """Same geometry, other voxels (e.g. a label map for this CT)."""
        if array.shape != self.array.shape:
            raise GeometryError(f"array shape {array.shape} does not match volume shape {self.array.shape}")
        return replace(self, array=array, meta=dict(self.meta))

    def slice_reference(self, k: float) -> str:
        """How a reader finds volume slice ``k`` (0-based, may be a mean) in PACS: 'image 42 (z -123.5 mm)',
        from ``meta["instance_numbers"]`` / ``meta["slice_positions_mm"]`` (set at assembly; the same
        words as ``StudyResult.slice_reference``); 'slice k+1' when they are unknown."""
        i = int(round(float(k)))
        inst = (self.meta.get("instance_numbers") or [])[i:i + 1]
        pos = (self.meta.get("slice_positions_mm") or [])[i:i + 1]
        words = f"image {inst[0]}" if inst and inst[0] is not None else f"slice {i + 1}"
        return words + (f" (z {pos[0]:.1f} mm)" if pos and pos[0] is not None else "")

    def same_grid(self, other: Volume, tol: float = 1e-4) -> bool:
        """True when shape, spacing, origin and direction agree (within ``tol`` mm / cosines)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing_zyx, other.spacing_zyx, atol=tol)
            and np.allclose(self.origin_xyz, other.origin_xyz, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def index_to_physical(self, idx_zyx: np.ndarray) -> np.ndarray:
        """Continuous (z, y, x) voxel indices (N, 3) -> LPS mm (N, 3) as (x, y, z)."""
        idx = np.atleast_2d(np.asarray(idx_zyx, dtype=float))[:, ::-1]  # -> (x, y, z)
        d = np.asarray(self.direction).reshape(3, 3)
        sp = np.asarray(zyx_to_xyz(self.spacing_zyx))
        return np.asarray(self.origin_xyz) + (idx * sp) @ d.T

    def physical_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """LPS mm (N, 3) as (x, y, z) -> continuous (z, y, x) voxel indices (N, 3): the inverse of
        :meth:`index_to_physical` (the direction matrix is orthonormal)."""
        d = np.asarray(self.direction, dtype=float).reshape(3, 3)
        sp = np.asarray(zyx_to_xyz(self.spacing_zyx), dtype=float)
        ijk = (np.atleast_2d(np.asarray(xyz, dtype=float)) - np.asarray(self.origin_xyz, dtype=float)) @ d / sp
        return ijk[:, ::-1]

    # --- SimpleITK / NIfTI -------------------------------------------------------------
    def to_sitk(self) -> sitk.Image:
        img = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        img.SetSpacing(zyx_to_xyz(self.spacing_zyx))
        img.SetOrigin(self.origin_xyz)
        img.SetDirection(self.direction)
        return img

    @classmethod
    def from_sitk(cls, img: sitk.Image, meta: dict | None = None) -> Volume:
        if img.GetDimension() != 3:
            raise GeometryError(f"expected a 3D image, got {img.GetDimension()}D")
        return cls(
            array=sitk.GetArrayFromImage(img),
            spacing_zyx=xyz_to_zyx(img.GetSpacing()),
            origin_xyz=tuple(img.GetOrigin()),
            direction=tuple(img.GetDirection()),
            meta=dict(meta or {}),
        )

    def write(self, path: str | Path) -> Path:
        """Write NIfTI (or any SimpleITK format by extension), compressed when .gz."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(self.to_sitk(), str(path), useCompression=str(path).endswith(".gz"))
        return path

    @classmethod
    def read(cls, path: str | Path) -> Volume:
        path = Path(path)
        if not path.exists():
            raise InputDataError(f"image file not found: {path}")
        try:
            img = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise InputDataError(f"cannot read image {path}: {str(exc).strip().splitlines()[-1]}") from exc
        return cls.from_sitk(img)
