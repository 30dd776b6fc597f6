#!/usr/bin/env bash
# Mutation testing of one module or a few, run to the end, and a row each for docs/testing.md:
#
#     MNIST_DATA_DIR=/absolute/path/to/data bash scripts/mutate.sh s5/env.py s5/pictures.py
#
# mutmut mutates every file pyproject.toml names, but runs only these modules' mutants. Its first run on a tree
# also runs the whole suite once, to learn which tests reach which function (longer than the suite itself); that
# map stays in mutants/, and later runs reuse it, as they reuse every verdict there: a run stopped halfway goes on from
# the mutants it had not checked (mutmut itself reruns every mutant whose name it is given). To redo a module's row
# after changing it, delete its verdicts first: rm mutants/s5/env.py.meta. Prints each module's mutants that were
# not killed, then its row: mutants, killed, survived, timed out, no tests, not checked yet. mutmut's own output goes
# to mutants/mutate.log.
set -euo pipefail
(( $# )) || { echo "mutate.sh: name one module or more, as paths: bash scripts/mutate.sh s5/env.py" >&2; exit 2; }
[[ ${MNIST_DATA_DIR:-} == /* ]] || { echo "mutate.sh: set MNIST_DATA_DIR to an absolute path; mutmut runs the tests from its copy of the tree, mutants/" >&2; exit 2; }
for module in "$@"; do
  [[ -f $module ]] || { echo "mutate.sh: there is no $module here; run it from the repository's root" >&2; exit 2; }
done
verdicts() {  # "name: verdict" lines of one module's mutants, as far as mutants/ has them
  local prefix; prefix=$(echo "${1%.py}" | tr / .)
  { [[ -d mutants ]] && python -m mutmut results --all true; } | sed 's/^ *//' | grep -E "^${prefix//./\\.}\.x" || true
}
names=()
for module in "$@"; do
  mutants=$(verdicts "$module")
  if [[ -z $mutants ]]; then
    names+=("$(echo "${module%.py}" | tr / .).*")
  else
    names+=($(echo "$mutants" | grep -E ": not checked$" | cut -d: -f1 || true))
  fi
done
mkdir -p mutants
# A forked OpenMP thread pool hangs, and mutmut forks a worker per mutant from a process that has run torch.
if (( ${#names[@]} )); then OMP_NUM_THREADS=1 python -m mutmut run "${names[@]}" > mutants/mutate.log 2>&1 || true; fi
for module in "$@"; do
  results=$(verdicts "$module")
  echo "$results" | grep -vE ": killed$" | grep . || true
  count() { echo "$results" | grep -cE ": $1$" || true; }
  echo "| $module | $(echo "$results" | grep -c .) | $(count killed) | $(count survived) | $(count timeout) | $(count "no tests") | $(count "not checked") |"
done
