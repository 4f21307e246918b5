#!/bin/sh
# A tiny "test suite" for the demo pipeline.
set -e
sum=$((2 + 2))
[ "$sum" -eq 4 ] && echo "ok 1 - arithmetic still works"
echo "hello" | grep -q ell && echo "ok 2 - grep finds substrings"
echo "1..2"
