# Sourced by scripts/book_assets.sh and scripts/slides_assets.sh (not a command): what both do to
# serve JavaScript from the npm registry instead of a CDN.
#
# npm_vendor FOLDER OUT WHAT COPY: in vendor/FOLDER, unless vendor/FOLDER/OUT/.installed-<hash> says
# it is done (the hash covers package-lock.json, the calling script and this file), run `npm ci`
# (the exact releases of package-lock.json), empty OUT, run the function COPY (which copies what is
# served from node_modules/ into OUT), and leave the stamp. WHAT names the files in messages.
# Needs Node's npm (Debian: apt-get install npm; GitHub's runners have it).

_npm_vendor_self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

npm_vendor() {
    local folder=$1 out=$2 what=$3 copy=$4
    local root; root="$(dirname "$(dirname "$_npm_vendor_self")")"
    cd "$root/vendor/$folder"
    local stamp
    stamp="$out/.installed-$(cat package-lock.json "$root/scripts/${folder}_assets.sh" "$_npm_vendor_self" | sha256sum | cut -c1-16)"
    [ -f "$stamp" ] && return 0
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm is missing: $what come from the npm registry, so that pages open without internet." >&2
        echo "Install Node.js's npm (Debian: apt-get install npm), then run this command again." >&2
        return 1
    fi
    echo "== vendoring $what (npm ci in vendor/$folder)"
    npm ci --no-audit --no-fund --loglevel=error
    rm -rf "$out"
    mkdir -p "$out"
    "$copy"
    touch "$stamp"
    echo "== $what in vendor/$folder/$out ($(du -sh "$out" | cut -f1))"
}
