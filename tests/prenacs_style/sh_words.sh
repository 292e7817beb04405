#!/bin/bash
# A Bash plugin in the MultiPlug 1.2 / prenacs 1.2 style: escapes in the
# constants (MultiPlug reads them with echo -e), results printed with echo -en
# (no trailing newline), an empty results line for "no value", helpers.

ID="sh_words"
VERSION="1.0"
INPUT="a word"
OUTPUT=( "word_length" "word_upper" )
METHOD="counts the characters,\tupper-cases the word"
PARAMETERS=( "suffix\tString(8)\t\tappended to the upper-case word"
             "verbose\tBoolean\tFalse\tadd a log line" )

function upper() { echo -n "${1^^}"; }

function compute_id() { echo -n "w_$1"; }

function compute() { local word=$1; shift; for x in $*; do eval $x; done
  if [ "$word" = "none" ]; then
    echo -en "\nno value: the word is none"
    return
  fi
  if [ "${word:0:4}" = "solo" ]; then
    echo -en "${#word}\t$(upper $word)${suffix}"
    return
  fi
  echo -en "${#word}\t$(upper $word)${suffix}\nlength of ${word}"
}
