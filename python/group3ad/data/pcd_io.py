"""Point-cloud file readers and writers: PCD (ascii, binary, binary_compressed), PLY, XYZ/TXT/CSV.

Every reader validates before it trusts a file: existence, size 0, header sanity and payload
size, because Open3D returns an empty (or, for a truncated ascii PCD, uninitialised) cloud on
corrupt files without raising. ASCII and binary PCD and vertex-first PLY are decoded here with
numpy; binary_compressed PCD (LZF) and unusual PLY layouts go through Open3D, and the point count
it returns is checked against the header. Every problem raises ``DataError`` naming the file.

Coordinates come back as float64 (N, 3); float32 files are widened exactly. Points with NaN/Inf
coordinates are never passed on silently: by default they raise, ``drop_nan=True`` drops them
(the count is returned so callers can report it).

Writers are deterministic (same input, same bytes): PCD binary/ascii are written here with a
fixed header and float32 little-endian payload; binary_compressed goes through Open3D.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import DataError

POINT_SUFFIXES = (".pcd", ".ply", ".xyz", ".txt", ".csv")
_MAX_HEADER_BYTES = 1 << 16

_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4",
              ("I", 8): "i8", ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2",
              "int16": "i2", "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4",
              "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4", "double": "f8",
              "float64": "f8"}


# ----------------------------------------------------------------------------- common checks

def _check_file(path) -> int:
    """Existence, kind and size; returns the size in bytes."""
    if not os.path.exists(path):
        raise DataError(path, "file not found")
    if not os.path.isfile(path):
        raise DataError(path, "not a regular file")
    size = os.path.getsize(path)
    if size == 0:
        raise DataError(path, "file is empty (0 bytes)")
    return size


def _finite_or_raise(path, points: np.ndarray, drop_nan: bool):
    """Returns (points, keep mask or None, number dropped); raises on NaN/Inf unless drop_nan."""
    finite = np.isfinite(points).all(axis=1)
    bad = int(points.shape[0] - np.count_nonzero(finite))
    if bad == 0:
        return points, None, 0
    if not drop_nan:
        first = int(np.flatnonzero(~finite)[0])
        raise DataError(path, f"{bad} of {points.shape[0]} points have NaN/Inf coordinates "
                              f"(first at index {first}); pass drop_nan=True to drop them")
    return points[finite], finite, bad


def _read_header_lines(path, stop) -> tuple[list[str], int]:
    """Header lines up to and including the one for which stop(line) is true; and the byte
    offset just after it. Raises if no such line occurs in the first 64 KiB or it is not text."""
    with open(path, "rb") as f:
        head = f.read(_MAX_HEADER_BYTES)
    lines, offset = [], 0
    while True:
        nl = head.find(b"\n", offset)
        if nl < 0:
            raise DataError(path, "garbage or truncated header (no end of header found)")
        raw = head[offset:nl]
        offset = nl + 1
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise DataError(path, f"garbage header: non-text bytes in header line {len(lines) + 1}") from None
        lines.append(line)
        if stop(line):
            return lines, offset


def _loadtxt(path, fh, usecols, max_rows=None, delimiter=None) -> np.ndarray:
    try:
        arr = np.loadtxt(fh, dtype=np.float64, usecols=usecols, max_rows=max_rows,
                         delimiter=delimiter, ndmin=2, comments="#")
    except ValueError as e:
        raise DataError(path, f"malformed text data: {e}") from None
    return arr


# ----------------------------------------------------------------------------- PCD

@dataclass(frozen=True)
class PcdHeader:
    fields: tuple[str, ...]
    sizes: tuple[int, ...]
    types: tuple[str, ...]
    counts: tuple[int, ...]
    points: int
    data: str
    data_offset: int

    def dtype(self) -> np.dtype:
        cols, seen = [], set()
        for i, (name, size, typ, count) in enumerate(zip(self.fields, self.sizes, self.types, self.counts)):
            base = "<" + _PCD_TYPES[(typ, size)]
            if name in seen:  # PCL pads records with repeated "_" fields
                name = f"{name}__{i}"
            seen.add(name)
            cols.append((name, base) if count == 1 else (name, base, (count,)))
        return np.dtype(cols)

    def ascii_columns(self) -> list[int]:
        """Text column of x, y, z (a field with COUNT k takes k columns)."""
        starts, col = {}, 0
        for name, count in zip(self.fields, self.counts):
            starts[name] = col
            col += count
        return [starts["x"], starts["y"], starts["z"]]


def read_pcd_header(path) -> PcdHeader:
    """Parses and sanity-checks a PCD header (raises DataError naming the problem)."""
    _check_file(path)
    lines, offset = _read_header_lines(path, lambda s: s.upper().startswith("DATA"))
    kv = {}
    for line in lines:
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        kv[parts[0].upper()] = parts[1:]
    for key in ("FIELDS", "SIZE", "TYPE", "WIDTH", "HEIGHT"):
        if key not in kv:
            raise DataError(path, f"garbage PCD header: no {key} line")
    fields = tuple(kv["FIELDS"])
    try:
        sizes = tuple(int(s) for s in kv["SIZE"])
        counts = tuple(int(s) for s in kv.get("COUNT", ["1"] * len(fields)))
        width, height = int(kv["WIDTH"][0]), int(kv["HEIGHT"][0])
        points = int(kv["POINTS"][0]) if "POINTS" in kv else width * height
    except (ValueError, IndexError):
        raise DataError(path, "garbage PCD header: non-integer SIZE/COUNT/WIDTH/HEIGHT/POINTS") from None
    types = tuple(t.upper() for t in kv["TYPE"])
    if not (len(fields) == len(sizes) == len(types) == len(counts)):
        raise DataError(path, "garbage PCD header: FIELDS, SIZE, TYPE and COUNT differ in length")
    for f, s, t in zip(fields, sizes, types):
        if (t, s) not in _PCD_TYPES:
            raise DataError(path, f"garbage PCD header: field {f!r} has unsupported TYPE {t} SIZE {s}")
    for axis in "xyz":
        if axis not in fields:
            raise DataError(path, f"PCD has no {axis!r} field (fields: {' '.join(fields)})")
    if points < 0 or width < 0 or height < 0 or min(counts) < 1:
        raise DataError(path, "garbage PCD header: negative sizes")
    data = kv["DATA"][0].lower() if kv["DATA"] else ""
    if data not in ("ascii", "binary", "binary_compressed"):
        raise DataError(path, f"unsupported PCD DATA encoding {data!r}")
    return PcdHeader(fields, sizes, types, counts, points, data, offset)


def _read_pcd(path, size: int) -> np.ndarray:
    h = read_pcd_header(path)
    if h.points == 0:
        raise DataError(path, "point cloud is empty (POINTS 0)")
    if h.data == "ascii":
        with open(path, "rb") as f:
            f.seek(h.data_offset)
            arr = _loadtxt(path, f, usecols=h.ascii_columns())
        if arr.shape[0] != h.points:
            raise DataError(path, f"truncated or corrupt: header says {h.points} points, "
                                  f"the ascii data has {arr.shape[0]}")
        cols = [h.fields.index(a) for a in "xyz"]
        if all(h.types[i] == "F" and h.sizes[i] == 4 for i in cols):
            arr = arr.astype(np.float32).astype(np.float64)  # the declared type: same values as binary
        return arr
    if h.data == "binary":
        dtype = h.dtype()
        need = h.points * dtype.itemsize
        if size - h.data_offset < need:
            raise DataError(path, f"truncated binary payload: {size - h.data_offset} bytes for "
                                  f"{h.points} points of {dtype.itemsize} bytes ({need} needed)")
        rec = np.fromfile(path, dtype=dtype, count=h.points, offset=h.data_offset)
        return np.stack([rec[a].astype(np.float64) for a in "xyz"], axis=1)
    # binary_compressed: uint32 compressed size, uint32 uncompressed size, LZF stream.
    with open(path, "rb") as f:
        f.seek(h.data_offset)
        sizes = f.read(8)
    if len(sizes) < 8:
        raise DataError(path, "truncated binary_compressed payload (no size words)")
    comp, uncomp = (int(v) for v in np.frombuffer(sizes, dtype="<u4"))
    expected = h.points * h.dtype().itemsize
    if uncomp != expected:
        raise DataError(path, f"corrupt binary_compressed payload: uncompressed size {uncomp}, "
                              f"{expected} expected for {h.points} points")
    if size - h.data_offset - 8 < comp:
        raise DataError(path, f"truncated binary_compressed payload: {size - h.data_offset - 8} "
                              f"of {comp} compressed bytes present")
    pts = _open3d_points(path)
    if pts.shape[0] != h.points:
        raise DataError(path, f"corrupt binary_compressed payload: decoded {pts.shape[0]} of "
                              f"{h.points} points")
    return pts


def _open3d_points(path) -> np.ndarray:
    import open3d as o3d

    pc = o3d.io.read_point_cloud(os.fspath(path), remove_nan_points=False,
                                 remove_infinite_points=False, print_progress=False)
    return np.asarray(pc.points, dtype=np.float64).reshape(-1, 3).copy()


# ----------------------------------------------------------------------------- PLY

def _read_ply(path, size: int) -> np.ndarray:
    lines, offset = _read_header_lines(path, lambda s: s == "end_header")
    if not lines or lines[0] != "ply":
        raise DataError(path, "garbage PLY header: first line is not 'ply'")
    fmt, elements = None, []
    for line in lines[1:]:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format" and len(parts) >= 2:
            fmt = parts[1]
        elif parts[0] == "element" and len(parts) == 3:
            try:
                elements.append([parts[1], int(parts[2]), []])
            except ValueError:
                raise DataError(path, f"garbage PLY header: bad element line {line!r}") from None
        elif parts[0] == "property" and elements:
            elements[-1][2].append(parts[1:])
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise DataError(path, f"garbage PLY header: unknown format {fmt!r}")
    vertex = next((e for e in elements if e[0] == "vertex"), None)
    if vertex is None:
        raise DataError(path, "PLY has no vertex element")
    n, props = vertex[1], vertex[2]
    names = [p[-1] for p in props]
    for axis in "xyz":
        if axis not in names:
            raise DataError(path, f"PLY vertex element has no {axis!r} property")
    if n == 0:
        raise DataError(path, "point cloud is empty (element vertex 0)")
    simple = elements[0] is vertex and all(p[0] != "list" and p[0] in _PLY_TYPES for p in props)
    if simple and fmt == "ascii":
        with open(path, "rb") as f:
            f.seek(offset)
            arr = _loadtxt(path, f, usecols=[names.index(a) for a in "xyz"], max_rows=n)
        if arr.shape[0] != n:
            raise DataError(path, f"truncated or corrupt: header says {n} vertices, found {arr.shape[0]}")
        return arr
    if simple:
        end = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(p[-1], end + _PLY_TYPES[p[0]]) for p in props])
        need = n * dtype.itemsize
        if size - offset < need:
            raise DataError(path, f"truncated binary payload: {size - offset} bytes for {n} "
                                  f"vertices of {dtype.itemsize} bytes ({need} needed)")
        rec = np.fromfile(path, dtype=dtype, count=n, offset=offset)
        return np.stack([rec[a].astype(np.float64) for a in "xyz"], axis=1)
    pts = _open3d_points(path)
    if pts.shape[0] != n:
        raise DataError(path, f"truncated or corrupt: header says {n} vertices, Open3D read {pts.shape[0]}")
    return pts


# ----------------------------------------------------------------------------- XYZ / TXT / CSV

def detect_delimiter(path) -> str | None:
    """',' if the first data line has a comma, else None (any whitespace)."""
    with open(path, "rb") as f:
        for raw in f:
            line = raw.strip()
            if line and not line.startswith(b"#"):
                return "," if b"," in line else None
    raise DataError(path, "no data lines (only blank lines or comments)")


def read_table(path, min_columns: int = 3) -> np.ndarray:
    """A numeric text table (space- or comma-separated, detected) as float64 (rows, columns)."""
    _check_file(path)
    delim = detect_delimiter(path)
    with open(path, "rb") as f:
        arr = _loadtxt(path, f, usecols=None, delimiter=delim)
    if arr.shape[0] == 0:
        raise DataError(path, "no data rows")
    if arr.shape[1] < min_columns:
        raise DataError(path, f"expected at least {min_columns} columns, found {arr.shape[1]}")
    return arr


# ----------------------------------------------------------------------------- public readers

def read_points(path, drop_nan: bool = False) -> tuple[np.ndarray, int]:
    """Reads the xyz coordinates of a .pcd, .ply, .xyz, .txt or .csv file.

    Returns ``(points, dropped)``: points float64 (N, 3) in file order, and how many NaN/Inf
    points were dropped (always 0 unless ``drop_nan``). Raises ``DataError`` naming the file on a
    missing, empty, truncated, corrupt or NaN-containing file.
    """
    size = _check_file(path)
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".pcd":
        pts = _read_pcd(path, size)
    elif suffix == ".ply":
        pts = _read_ply(path, size)
    elif suffix in (".xyz", ".txt", ".csv"):
        pts = read_table(path)[:, :3].copy()
    else:
        raise DataError(path, f"unsupported point-cloud suffix {suffix!r} (use one of {', '.join(POINT_SUFFIXES)})")
    if pts.shape[0] == 0:
        raise DataError(path, "point cloud is empty")
    pts, _, dropped = _finite_or_raise(path, pts, drop_nan)
    return pts, dropped


def read_point_count(path) -> int:
    """Number of points in a file, from the header where there is one (cheap for PCD/PLY)."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".pcd":
        return read_pcd_header(path).points
    if suffix == ".ply":
        _check_file(path)
        lines, _ = _read_header_lines(path, lambda s: s == "end_header")
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[:2] == ["element", "vertex"]:
                return int(parts[2])
        raise DataError(path, "PLY has no vertex element")
    return read_points(path, drop_nan=True)[0].shape[0]


def read_labelled_txt(path, drop_nan: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Reads a ground-truth file of rows ``x y z label`` (space- or comma-separated).

    Returns ``(points float64 (N, 3), labels uint8 (N,), dropped)``. Labels must be 0 or 1.
    """
    table = read_table(path, min_columns=4)
    pts, lab = table[:, :3].copy(), table[:, 3]
    bad = ~np.isin(lab, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"labels must be 0 or 1; row {i + 1} has {lab[i]!r}")
    pts, keep, dropped = _finite_or_raise(path, pts, drop_nan)
    labels = lab.astype(np.uint8)
    if keep is not None:
        labels = labels[keep]
    return pts, labels, dropped


# ----------------------------------------------------------------------------- writers

def _pcd_header(n: int, data: str) -> bytes:
    return ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\n"
            "SIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
            f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n").encode("ascii")


def _as_points(points, name="points") -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N, 3), got {pts.shape}")
    return pts


def write_pcd(path, points, encoding: str = "binary") -> None:
    """Writes xyz as float32 PCD. ``encoding``: 'binary' (default), 'ascii' or 'binary_compressed'.

    binary and ascii are written here byte-for-byte deterministically; binary_compressed is
    written by Open3D.
    """
    pts = _as_points(points).astype("<f4")
    if encoding == "binary":
        with open(path, "wb") as f:
            f.write(_pcd_header(len(pts), "binary"))
            f.write(np.ascontiguousarray(pts).tobytes())
    elif encoding == "ascii":
        with open(path, "wb") as f:
            f.write(_pcd_header(len(pts), "ascii"))
            np.savetxt(f, pts.astype(np.float64), fmt="%.9g")
    elif encoding == "binary_compressed":
        import open3d as o3d

        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.astype(np.float64)))
        if not o3d.io.write_point_cloud(os.fspath(path), pc, write_ascii=False, compressed=True):
            raise DataError(path, "Open3D could not write the file")
    else:
        raise ValueError(f"encoding: expected 'binary', 'ascii' or 'binary_compressed', got {encoding!r}")


def write_labelled_txt(path, points, labels, delimiter: str = " ") -> None:
    """Writes ``x y z label`` rows (Real3D-AD ground truth). Coordinates are written with 9
    significant digits, enough to round-trip float32 exactly."""
    pts = _as_points(points).astype(np.float32).astype(np.float64)
    lab = np.asarray(labels).reshape(-1)
    if lab.shape[0] != pts.shape[0]:
        raise ValueError(f"labels: expected {pts.shape[0]} labels, got {lab.shape[0]}")
    row = delimiter.join(["%.9g", "%.9g", "%.9g", "%d"]) + "\n"
    with open(path, "wb") as f:
        # one %-format per chunk of rows: several times faster than np.savetxt's per-row loop
        for s in range(0, len(pts), 65536):
            p, l = pts[s:s + 65536], lab[s:s + 65536].astype(np.int64)
            flat = [v for r in zip(p[:, 0].tolist(), p[:, 1].tolist(), p[:, 2].tolist(), l.tolist()) for v in r]
            f.write(((row * len(p)) % tuple(flat)).encode("ascii"))
