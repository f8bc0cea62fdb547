"""Turns csrc/cuda/*.cu into C++ that g++ compiles against cuda_emu.h.

These rewrites, nothing else (the kernels' code is what gets tested):
  kernel<<<grid, block[, smem[, stream]]>>>(args)  ->  emu_launch(&kernel, EmuCfg(grid, block...), args)
  __shared__ T name[A][B];                        ->  per-block storage (emu_shared)
  reinterpret_cast<const void*>(&kernel)          ->  emu_kernel_ptr(&kernel), so that
                                                      cudaLaunchCooperativeKernel can call it
  constexpr T kName = expr;                       ->  constexpr T kName = value;  for the constants
                                                      the caller overrides (build.py: scratch budgets)
  exact text named by the caller                  ->  the same text with a probe (build.py: counters
                                                      the tests read, e.g. knn's distance evaluations)
Line numbers are kept and a #line directive names the original file, so compiler errors and
sanitizer reports point into csrc/cuda/.

    python tools/cuda_emu/patch.py SRC_CSRC_DIR OUT_DIR
"""

import pathlib
import re
import sys

_SHARED = re.compile(r"__shared__\s+([A-Za-z_][\w:]*)\s+([A-Za-z_]\w*)((?:\s*\[[^\]]*\])*)\s*;")
_KERNEL_PTR = "reinterpret_cast<const void*>(&"


class PatchError(RuntimeError):
    pass


def _matching(s, i, open_ch, close_ch):
    """Index of the bracket closing the one at s[i]."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == open_ch:
            depth += 1
        elif s[j] == close_ch:
            depth -= 1
            if depth == 0:
                return j
    raise PatchError(f"unbalanced {open_ch}{close_ch} at offset {i}")


def _kernel_name_start(s, i):
    """Start of the kernel expression that ends right before s[i] (`name` or `ns::name<...>`)."""
    j, depth = i, 0
    while j > 0:
        c = s[j - 1]
        if c == ">":
            depth += 1
        elif c == "<":
            depth -= 1
        elif depth == 0 and not (c.isalnum() or c in "_:"):
            break
        j -= 1
    return j


def rewrite_launches(s):
    out, pos = [], 0
    while (i := s.find("<<<", pos)) >= 0:
        start = _kernel_name_start(s, i)
        k = s.find(">>>", i)
        if k < 0:
            raise PatchError("<<< without >>>")
        paren = k + 3
        while s[paren].isspace():
            paren += 1
        if s[paren] != "(":
            raise PatchError(f"launch without an argument list: {s[start:paren + 10]!r}")
        close = _matching(s, paren, "(", ")")
        name, cfg, args = s[start:i], s[i + 3:k], s[paren + 1:close]
        call = f"emu_launch(&{name}, EmuCfg({cfg})" + (f", {args})" if args.strip() else ")")
        # Keep the line count: newlines dropped between >>> and ( go after the call.
        call += "\n" * (s[start:close + 1].count("\n") - call.count("\n"))
        out += [s[pos:start], call]
        pos = close + 1
    out.append(s[pos:])
    return "".join(out)


def rewrite_shared(s):
    def repl(m):
        typ, name, dims = m.group(1), m.group(2), "".join(re.findall(r"\[[^\]]*\]", m.group(3)))
        # One static tag per declaration (and per template instantiation) keys the block's copy.
        return (f"static char {name}_emu_tag; auto& {name} = emu_shared<{typ}{dims}>(&{name}_emu_tag);"
                + "\n" * m.group(0).count("\n"))

    s = _SHARED.sub(repl, s)
    if "__shared__" in s:
        line = s[:s.index("__shared__")].count("\n") + 1
        raise PatchError(f"line {line}: a __shared__ declaration this patcher does not handle")
    return s


def override_constants(s, overrides):
    for name, value in overrides.items():
        pat = re.compile(r"(constexpr\s+[\w:]+\s+" + re.escape(name) + r"\s*=\s*)([^;]*);")
        s, n = pat.subn(lambda m: m.group(1) + value + ";" + "\n" * m.group(2).count("\n"), s)
        if n != 1:
            raise PatchError(f"constexpr {name} found {n} times (renamed? update tools/cuda_emu/build.py)")
    return s


def insert_probes(s, probes):
    """probes: [(text, replacement)], each text found exactly once and replaced on its own line."""
    for old, new in probes:
        n = s.count(old)
        if n != 1:
            raise PatchError(f"probe site {old!r} found {n} times (changed? update tools/cuda_emu/build.py)")
        if old.count("\n") != new.count("\n"):
            raise PatchError(f"probe for {old!r} changes the line count")
        s = s.replace(old, new)
    return s


def patch_source(text, path, overrides=None, probes=None):
    s = override_constants(rewrite_shared(rewrite_launches(text)), overrides or {})
    s = insert_probes(s, probes or [])
    if "cudaLaunchCooperativeKernel" in s and _KERNEL_PTR not in s:
        raise PatchError("cooperative launch, but no reinterpret_cast<const void*>(&kernel) to register it by")
    s = s.replace(_KERNEL_PTR, "emu_kernel_ptr(&")
    return f'#line 1 "{path}"\n{s}'


def patch_tree(csrc, out_dir, overrides=None, probes=None):
    """Writes out_dir/<name>.cu for every csrc/cuda/*.cu (only when its text changed).
    overrides: {file name: {constant: value}}; probes: {file name: [(text, replacement)]}.
    Returns the written paths."""
    overrides, probes = dict(overrides or {}), dict(probes or {})
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted((pathlib.Path(csrc) / "cuda").glob("*.cu"))
    if not sources:
        raise PatchError(f"no .cu files under {csrc}/cuda")
    written = []
    for src in sources:
        try:
            text = patch_source(src.read_text(), src.resolve(), overrides.pop(src.name, None),
                                probes.pop(src.name, None))
        except PatchError as e:
            raise PatchError(f"{src}: {e}") from None
        dst = out_dir / src.name
        if not dst.exists() or dst.read_text() != text:
            dst.write_text(text)
        written.append(dst)
    if overrides:
        raise PatchError(f"constants to override in missing sources: {sorted(overrides)}")
    if probes:
        raise PatchError(f"probes for missing sources: {sorted(probes)}")
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    for p in patch_tree(sys.argv[1], sys.argv[2]):
        print(p)
