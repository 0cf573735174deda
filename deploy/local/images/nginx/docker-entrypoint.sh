#!/bin/sh
# The official image's template step (20-envsubst-on-templates.sh), then exec the command.
# Only variables set in the environment are substituted, so nginx's own $vars stay.
set -eu
if [ "${1:-}" = nginx ]; then
  tdir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
  suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
  odir=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
  filter=${NGINX_ENVSUBST_FILTER:-}
  # shellcheck disable=SC2016,SC2046
  defined=$(printf '${%s} ' $(awk "END { for (n in ENVIRON) { print (n ~ /${filter}/) ? n : \"\" } }" </dev/null))
  version=$(nginx -v 2>&1 | sed 's|.*nginx/||; s| .*||')
  find "$tdir" -follow -type f -name "*$suffix" 2>/dev/null | while read -r t; do
    rel=${t#"$tdir/"}; out="$odir/${rel%"$suffix"}"
    mkdir -p "$(dirname "$out")"
    envsubst "$defined" <"$t" >"$out"
    # Debian bookworm's nginx is 1.22: the `http2 on;` directive came in 1.25.1. Same
    # meaning, older spelling: drop it and add `http2` to the ssl listen lines.
    if grep -Eq '^[[:space:]]*http2[[:space:]]+on;' "$out" \
       && dpkg --compare-versions "$version" lt 1.25.1; then
      sed -i -E -e '/^[[:space:]]*http2[[:space:]]+on;/d' \
        -e 's/^([[:space:]]*listen[[:space:]][^;]*[[:space:]]ssl)([[:space:];])/\1 http2\2/' "$out"
      echo "docker-entrypoint.sh: nginx $version: 'http2 on;' written as 'listen ... ssl http2' in $out" >&2
    fi
  done
fi
exec "$@"
