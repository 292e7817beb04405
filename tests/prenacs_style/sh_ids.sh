#!/bin/bash
# An idsproc module for prenacs 1.2 --idsproc, in Bash: compute_id(str) -> str.
function compute_id() { echo -n "${1%%.*}" | tr 'a-z' 'A-Z'; }
