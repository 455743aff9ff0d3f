"""Write `.dvc/plots/page.html`, the page `dvc plots show` fills (`.dvc/config`: plots.html_template).

DVC's own page loads Vega, Vega-Lite and vega-embed from a CDN, so without a network only the
PNG figures draw. This page carries the three libraries inline (the same versions DVC's page
asks the CDN for), from their npm packages, so the HTML `dvc plots show` writes works offline and
anywhere it is copied. It also lists any Vega error at the top of the page (and for
tests/test_plots_html.py, which opens it in headless Chromium).

    cd /tmp && npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
    python scripts/plots_template.py /tmp          # the folder holding the three .tgz files

Their licences (BSD-3-Clause) are copied to `.dvc/plots/licenses/`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
from pathlib import Path

# name -> (version, the UMD build inside the npm package): DVC's VegaRenderer.SCRIPTS versions
PACKAGES = {
    "vega": ("5.20.2", "package/build/vega.min.js"),
    "vega-lite": ("5.2.0", "package/build/vega-lite.min.js"),
    "vega-embed": ("6.18.2", "package/build/vega-embed.min.js"),
}
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")  # what dvc-render replaces in the page

# Vega reports a failed spec as a rejected promise or a console error: shown at the top of the page
# (a user sees why a chart is missing) and kept in `window.plotErrors`; console warnings (Vega-Lite's
# notes on DVC's templates, vega-embed's version note) only in `window.plotWarnings`.
CATCH = """
window.plotErrors = [];
window.plotWarnings = [];
function plotError(what) {
  var text = what && what.message ? what.message : String(what);
  window.plotErrors.push(text);
  var box = document.getElementById("plot-errors");
  if (box) { var line = document.createElement("pre"); line.textContent = "error: " + text; box.appendChild(line); }
}
window.addEventListener("error", function (e) { plotError(e.error || e.message); });
window.addEventListener("unhandledrejection", function (e) { plotError(e.reason); });
var consoleError = console.error, consoleWarn = console.warn;
console.error = function () { plotError(Array.prototype.join.call(arguments, " ")); consoleError.apply(console, arguments); };
console.warn = function () { window.plotWarnings.push(Array.prototype.join.call(arguments, " ")); consoleWarn.apply(console, arguments); };
"""

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>voicegender plots</title>
    <!-- Written by scripts/plots_template.py. {credits}; BSD-3-Clause, see .dvc/plots/licenses/ -->
{scripts}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
        img {{ max-width: 100%; }}
        #plot-errors pre {{ color: #b00; white-space: pre-wrap; }}
    </style>
</head>
<body>
    <div id="plot-errors"></div>
    {{plot_divs}}
</body>
</html>
"""


def _member(tgz: Path, name: str) -> bytes:
    with tarfile.open(tgz) as tar:
        return tar.extractfile(name).read()


def build(npm_dir: Path, out_dir: Path) -> Path:
    """Write ``out_dir``/page.html and ``out_dir``/licenses/ from the npm tarballs in ``npm_dir``."""
    scripts, credits = [f"    <script>{CATCH}</script>"], []
    (out_dir / "licenses").mkdir(parents=True, exist_ok=True)
    for name, (version, path) in PACKAGES.items():
        tgz = npm_dir / f"{name}-{version}.tgz"
        if not tgz.is_file():
            raise SystemExit(f"{tgz} is missing: run `npm pack {name}@{version}` in {npm_dir}")
        js = _member(tgz, path).decode("utf-8")
        bad = [p for p in (*PLACEHOLDERS, "</script") if p in js]
        if bad:  # dvc-render would replace these, or the browser would end the script early
            raise SystemExit(f"{name}: {path} contains {bad}: cannot be inlined")
        digest = hashlib.sha256(js.encode("utf-8")).hexdigest()
        scripts.append(f"    <!-- {name}@{version} {path.removeprefix('package/')} sha256 {digest} -->")
        scripts.append(f"    <script>{js}</script>")
        credits.append(f"{name} {version}")
        (out_dir / "licenses" / f"{name}.LICENSE").write_bytes(_member(tgz, "package/LICENSE"))
    page = out_dir / "page.html"
    page.write_text(PAGE.format(credits=", ".join(credits), scripts="\n".join(scripts)), encoding="utf-8")
    return page


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("npm_dir", type=Path, help="folder holding the `npm pack` tarballs")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / ".dvc/plots")
    args = ap.parse_args(argv)
    print(f"wrote {build(args.npm_dir, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
