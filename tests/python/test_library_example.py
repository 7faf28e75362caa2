"""The README's C++ library example ("From C++: find_package(lorafast)"), taken from the
README itself, built against a `cmake --install` of this build tree (so against the
installed headers and the exported CMake package, not the source tree) and run: it
must compile, link and print one planned decision per query head.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_blocks():
    """The cmake and cpp code blocks of the README's C++ section."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("### From C++", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    blocks = dict(re.findall(r"```(cmake|cpp)\n(.*?)```", section, re.S))
    check(set(blocks) == {"cmake", "cpp"}, "README C++ section lacks its cmake or cpp block")
    return blocks


def run(args, **kw):
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)
    check(result.returncode == 0, "%s failed (%d):\n%s%s" % (" ".join(args), result.returncode, result.stdout,
                                                             result.stderr))
    return result.stdout


@harness.test
def readme_example_builds_against_the_installed_package(binary):
    build = os.path.dirname(os.path.abspath(binary))
    cmake = shutil.which("cmake")
    blocks = readme_blocks()
    name = re.search(r"add_executable\((\w+)", blocks["cmake"]).group(1)
    with tempfile.TemporaryDirectory() as d:
        prefix, source, out = (os.path.join(d, x) for x in ("prefix", "src", "build"))
        run([cmake, "--install", build, "--prefix", prefix])
        os.makedirs(source)
        with open(os.path.join(source, "CMakeLists.txt"), "w") as f:
            f.write(blocks["cmake"])
        with open(os.path.join(source, name + ".cpp"), "w") as f:
            f.write(blocks["cpp"])
        run([cmake, "-S", source, "-B", out, "-DCMAKE_PREFIX_PATH=" + prefix, "-DCMAKE_BUILD_TYPE=Release"])
        run([cmake, "--build", out])
        lines = run([os.path.join(out, name)]).splitlines()
        heads = [line for line in lines if re.match(r"head \d+: (exact|fast|chained)\b", line)]
        check(len(heads) == 8, "expected one decision per query head, got:\n" + "\n".join(lines))
        check(any(line.startswith("o[0] = ") for line in lines), "no output line")


if __name__ == "__main__":
    sys.exit(harness.main())
