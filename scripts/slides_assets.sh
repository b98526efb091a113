#!/usr/bin/env bash
# The files the lecture decks serve themselves, so that they open offline (a lecture hall without
# internet): `bash scripts/slides_assets.sh` (scripts/slides.py runs it before building the decks).
#
# - nbconvert's reveal.js template loads reveal.js (4.x or 5.x: the template asks for
#   plugin/notes/notes.js, which 6.x moved), require.js, jQuery and MathJax 2 from CDNs. The exact
#   releases pinned in vendor/slides/package-lock.json come from the npm registry (`npm ci` into
#   vendor/slides/node_modules/), and only what the decks use is copied into vendor/slides/lib/:
#   reveal.js's dist/ and notes plugin, require.js, jquery.min.js, Font Awesome 4's CSS and woff fonts
#   (the buttons of matplotlib's animation player), and MathJax 2's combined
#   TeX-AMS_CHTML-full configuration with the CHTML output and its TeX woff fonts (7.5 MB of
#   MathJax's 73 MB), each with its licence.
# - does nothing, in a few milliseconds, when that is done: the copy leaves a stamp
#   vendor/slides/lib/.installed-<hash> (scripts/_npm_vendor.sh, shared with book_assets.sh).
# Needs Node's npm (Debian: apt-get install npm). Everything it writes is ignored by git.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then  # print the comment above
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0
fi
# shellcheck source=scripts/_npm_vendor.sh
source "$(dirname "$0")/_npm_vendor.sh"

copy_decks_js() {
    local m=node_modules
    mkdir -p lib/reveal.js/plugin lib/mathjax/jax/output lib/mathjax/fonts/HTML-CSS/TeX lib/requirejs lib/jquery
    cp -R $m/reveal.js/dist $m/reveal.js/LICENSE lib/reveal.js/
    rm -f lib/reveal.js/dist/*.map lib/reveal.js/dist/reveal.esm.js
    cp -R $m/reveal.js/plugin/notes lib/reveal.js/plugin/
    cp $m/requirejs/require.js lib/requirejs/
    cp $m/jquery/dist/jquery.min.js $m/jquery/LICENSE.txt lib/jquery/
    cp $m/mathjax/MathJax.js $m/mathjax/LICENSE lib/mathjax/
    mkdir -p lib/mathjax/config
    cp $m/mathjax/config/TeX-AMS_CHTML-full.js $m/mathjax/config/Safe.js lib/mathjax/config/   # the configuration the decks ask for, and its Safe mode
    cp -R $m/mathjax/config/local lib/mathjax/config/
    cp -R $m/mathjax/extensions $m/mathjax/localization lib/mathjax/
    cp -R $m/mathjax/jax/input $m/mathjax/jax/element lib/mathjax/jax/
    cp -R $m/mathjax/jax/output/CommonHTML lib/mathjax/jax/output/
    cp -R $m/mathjax/fonts/HTML-CSS/TeX/woff lib/mathjax/fonts/HTML-CSS/TeX/
    mkdir -p lib/font-awesome/css lib/font-awesome/fonts   # the buttons of matplotlib's animation player
    cp $m/font-awesome/css/font-awesome.min.css $m/font-awesome/README.md lib/font-awesome/css/
    cp $m/font-awesome/fonts/fontawesome-webfont.woff2 $m/font-awesome/fonts/fontawesome-webfont.woff lib/font-awesome/fonts/
}
npm_vendor slides lib "reveal.js, require.js, jQuery, MathJax 2 and Font Awesome 4 for the decks" copy_decks_js
