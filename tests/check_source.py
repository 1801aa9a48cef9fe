#!/usr/bin/env python3
# Source rules `make check` enforces that the compiler cannot:
#  1. the kernel module owns the maps: under user/, only user/kernel/ may
#     include libbpf (<bpf/...>, <linux/bpf.h>), the skeleton or
#     kernel_int.h, or touch map_fd;
#  2. a comment that cites a file of the repository cites one that exists
#     (user/..., tests/..., docs/design.md, README.md ...), and no comment
#     cites a path outside it (the machine's work folder, the shared data
#     folder, a design file other than docs/design.md).
# usage: tests/check_source.py [ROOT]    (exit 1 and one line per problem)
#        tests/check_source.py --self-test
import os, re, subprocess, sys, tempfile

TOP = ("user", "bpf", "include", "tests", "docs", "bench", "packaging", "man")
KERNEL_ONLY = re.compile(r'#\s*include\s*[<"](bpf/[^>"]+|linux/bpf\.h|smtpgov\.skel\.h|kernel_int\.h)[>"]')
CITED = re.compile(r'(?<![\w./-])((?:%s)/[\w./-]*[\w/])' % "|".join(TOP))
MD = re.compile(r'(?<![\w./-])([\w-]+\.md)\b')
OUTSIDE = re.compile(r'(/work/[\w./-]+|\bshared/data/[\w./-]*|\bshared/[A-Z][\w.-]*)')
SRC_EXT = (".c", ".h", ".sh", ".py")


def files(root):
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-co", "--exclude-standard"],
                             capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        out = [os.path.relpath(os.path.join(d, f), root)
               for d, _, fs in os.walk(root) for f in fs]
    return sorted(f for f in out if (f.endswith(SRC_EXT) or os.path.basename(f) == "Makefile")
                  and not f.startswith("build/") and os.path.isfile(os.path.join(root, f)))


def comments(path, text):
    """(line number, comment text) of each line that carries a comment."""
    c_like = path.endswith((".c", ".h"))
    in_block = False
    for n, line in enumerate(text.splitlines(), 1):
        if c_like:
            part = ""
            rest = line
            while rest:
                if in_block:
                    end = rest.find("*/")
                    part += rest if end < 0 else rest[:end]
                    if end < 0:
                        rest = ""
                    else:
                        in_block, rest = False, rest[end + 2:]
                    continue
                i, j = rest.find("/*"), rest.find("//")
                if j >= 0 and (i < 0 or j < i):
                    part += rest[j + 2:]
                    break
                if i < 0:
                    break
                in_block, rest = True, rest[i + 2:]
            if part.strip():
                yield n, part
        else:
            m = re.search(r"(?:^|\s)#(?!!)", line)
            if m and not line.startswith("#!"):
                yield n, line[m.end():]


def exists(root, p):
    """A cited path exists: as written, as a tool's source (tests/tools/X ->
    X.c), or as a stem (tests/fuzz/fuzz_ -> fuzz_*.c); an upper-case part
    is a placeholder (tests/data/NAME.log)."""
    if any(re.fullmatch(r"[A-Z]+(\.\w+)?", part) for part in p.split("/")):
        return True
    full = os.path.join(root, p)
    if os.path.exists(full) or os.path.exists(full + ".c") or os.path.exists(full + ".sh"):
        return True
    d, stem = os.path.split(full)
    return bool(stem) and os.path.isdir(d) and any(f.startswith(stem) for f in os.listdir(d))


def check(root):
    bad = []
    for f in files(root):
        text = open(os.path.join(root, f), encoding="utf-8", errors="replace").read()
        if f.startswith("user/") and not f.startswith("user/kernel/"):
            for n, line in enumerate(text.splitlines(), 1):
                if KERNEL_ONLY.search(line) or re.search(r"\bmap_fd\b", line):
                    bad.append("%s:%d: only user/kernel may reach the maps: %s" % (f, n, line.strip()))
        for n, c in comments(f, text):
            for m in OUTSIDE.finditer(c):
                bad.append("%s:%d: comment cites %s, which is not in the repository (cite docs/design.md)"
                           % (f, n, m.group(1)))
            for m in CITED.finditer(c):
                p = m.group(1).rstrip(".")
                if "*" in p or "%" in p:
                    continue
                if not exists(root, p):
                    bad.append("%s:%d: comment cites %s, which does not exist" % (f, n, p))
            for m in MD.finditer(c):
                name = m.group(1)
                if not (os.path.exists(os.path.join(root, name)) or
                        os.path.exists(os.path.join(root, "docs", name))):
                    bad.append("%s:%d: comment cites %s, which is not in the repository (cite docs/design.md)"
                               % (f, n, name))
    return bad


def self_test():
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "user", "daemon"))
        os.makedirs(os.path.join(d, "docs"))
        open(os.path.join(d, "docs", "design.md"), "w").write("# notes\n")
        good = os.path.join(d, "user", "daemon", "a.c")
        open(good, "w").write("/* see docs/design.md and user/daemon/a.c */\nint a;\n")
        assert check(d) == [], check(d)
        for text, why in (("/* see DESIGN.md */\n", "DESIGN.md"),
                          ("// user/daemon/gone.c does it\n", "does not exist"),
                          ("/*\n * as /work/shared/DESIGN.md says\n */\n", "/work/"),
                          ("#include <bpf/libbpf.h>\n", "only user/kernel")):
            open(good, "w").write(text)
            got = check(d)
            assert got and why in got[0], (text, got)
    print("check_source: self-test passed")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        sys.exit(0)
    problems = check(sys.argv[1] if len(sys.argv) > 1 else ".")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)
