#!/usr/bin/env bash
# verify-generated.sh — regenerate deepcopy, CRDs and RBAC in a scratch copy of the tree and fail
# when anything differs from the files in the working tree (someone changed a type or a marker
# without running `make generate`, or edited generated output by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CONTROLLER_GEN:?set CONTROLLER_GEN to the controller-gen binary}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# The tree as git sees it (tracked and untracked-but-not-ignored), so a fresh clone and a dirty
# work tree are checked the same way.
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - 2>/dev/null | tar -xf - -C "$scratch"
(cd "$scratch" && make --no-print-directory -s generate CONTROLLER_GEN="$CONTROLLER_GEN" BIN="$(dirname "$CONTROLLER_GEN")" >/dev/null)

status=0
for dir in api config/crd/bases config/rbac; do
  if ! diff -ruN "$dir" "$scratch/$dir" >"$scratch.diff" 2>&1; then
    echo "generated files under $dir are stale; run 'make generate' and commit the result:" >&2
    head -40 "$scratch.diff" >&2
    status=1
  fi
done
rm -f "$scratch.diff"
exit $status
