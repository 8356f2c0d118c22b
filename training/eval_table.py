"""Side-by-side table of lewm-eval runs on the same pairs (e.g. tuned and paper planner settings), over training seeds.

    python training/eval_table.py out/push_t/seed*/tuned out/push_t/seed*/paper --out out/push_t/results.md

Each argument is a folder with the ``results.json`` that ``lewm-eval`` writes; folders with the same name (``tuned``
under ``seed0/`` and ``seed1/``) are one row: the same planner on models trained with different seeds. Rows: every
planner under its label (the folder name), then the oracle (lewm-eval --oracle), the random floor and the replay
ceiling from the first run that has them (they do not depend on the model). Columns: the subsets, as success % with
the 95% Wilson interval and the number of pairs; a row of several runs gives each run's success and their mean;
where the world's benchmark has a criterion of its own (Reacher), its success rates follow.
Runs are checked to use the same pairs, so that the rows compare like with like. Where the world says what a pair
asks of the robot (its SPEC.pair_kind: Cube's pick up, put down, ...), a second table breaks the first subset's
successes down by it, with the same rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _cell(entries: list[dict]) -> str:
    official = ''  # worlds whose benchmark checks success otherwise (Reacher: the shoulder's raw angle)
    if all('official_success_rate' in entry for entry in entries):
        official = '; official criterion ' + ' / '.join(f"{100 * entry['official_success_rate']:.0f}%"
                                                        for entry in entries)
    if len(entries) > 1:  # one model per training seed: each run's success, then their mean
        rates = [100 * entry['success_rate'] for entry in entries]
        return (f"{' / '.join(f'{rate:.0f}%' for rate in rates)} (mean {sum(rates) / len(rates):.0f}%, "
                f"n={entries[0]['episodes']} each{official})")
    (entry,) = entries
    low, high = entry['ci95']
    return f"{100 * entry['success_rate']:.0f}% [{100 * low:.0f}, {100 * high:.0f}] (n={entry['episodes']}{official})"


def _planner_settings(results: dict) -> str:
    cem, mpc = results['cem'], results['mpc']
    execute = 'whole plan' if mpc['mode'] == 'paper' else f"replan every {mpc['execute_steps']}"
    solver = mpc.get('solver', 'cem')  # what ran (auto's choice); runs recorded before there were solvers: cem
    if solver == 'prior':
        return f"the action prior's mean (no search), H {cem['horizon']}, {execute}"
    noise = 'white' if cem['noise_beta'] == 0 else f"1/f^{cem['noise_beta']:g}"
    search = (f"CEM {cem['samples']}x{cem['elites']}x{cem['iterations']}, H {cem['horizon']}, {noise} noise "
              f"(std {cem['init_std']:g}), cost {mpc['objective']}, {execute}")
    if solver == 'prior+cem':
        return f"action prior ({100 * mpc['prior_share']:.0f}% of the first round) + {search}"
    return search


def _baselines(runs: dict[str, list[dict]]) -> list[tuple[str, dict]]:
    """(policy, the first run that has it) for the oracle, random and replay rows: they do not depend on the model."""
    every = [results for group in runs.values() for results in group]
    subset = next(iter(every[0]['subsets']))
    found = ((policy, next((r for r in every if policy in r['subsets'][subset]), None))
             for policy in ('oracle', 'random', 'replay'))
    return [(policy, source) for policy, source in found if source is not None]


def _planner_label(label: str, group: list[dict]) -> str:
    return f'planner ({label}, {len(group)} models)' if len(group) > 1 else f'planner ({label})'


def _kind_cell(outcomes: list[list[bool]], picked: list[bool]) -> str:
    """Successes among the picked pairs, one count per run, and their mean rate: '4 / 2 of 16 (19%)'."""
    counts = [sum(ok for ok, kept in zip(run, picked, strict=True) if kept) for run in outcomes]
    total = sum(picked)
    rate = 100 * sum(counts) / (len(counts) * total)
    return f"{' / '.join(map(str, counts))} of {total} ({rate:.0f}%)"


def kinds_table(runs: dict[str, list[dict]], kinds: list[str]) -> str:
    """The first subset's successes by what each pair asks (kinds: one per pair), rows as in ``table``."""
    subset = next(iter(next(iter(runs.values()))[0]['subsets']))
    names = sorted(set(kinds), key=lambda name: (-kinds.count(name), name))
    lines = [f"| policy | {' | '.join(names)} |", '|' + '---|' * (len(names) + 1)]
    rows = [(_planner_label(label, group), [results['subsets'][subset]['planner']['per_episode'] for results in group])
            for label, group in runs.items()]
    rows += [(policy, [source['subsets'][subset][policy]['per_episode']]) for policy, source in _baselines(runs)]
    for label, outcomes in rows:
        cells = ' | '.join(_kind_cell(outcomes, [kind == name for kind in kinds]) for name in names)
        lines.append(f'| {label} | {cells} |')
    return f'{subset} pairs by what they ask (successes per model of the pairs of that kind)\n\n' + '\n'.join(lines)


def pair_kinds(results: dict) -> list[str] | None:
    """What each of the first subset's pairs asks, by the world's SPEC.pair_kind; None where it has none."""
    from lewm_ros.sim.registry import world_spec  # here: the tables themselves need only the JSON

    kind = world_spec(results['world']).pair_kind
    if kind is None:
        return None
    pairs = next(iter(results['subsets'].values()))['pairs']
    return [kind(np.asarray(pair['start']), np.asarray(pair['goal'])) for pair in pairs]


def table(runs: dict[str, list[dict]]) -> str:
    """runs: label -> the results of that planner, one per trained model."""
    first = next(iter(runs.values()))[0]
    subsets = list(first['subsets'])
    for label, group in runs.items():
        for results in group:
            for subset in subsets:
                if results['subsets'][subset]['pairs'] != first['subsets'][subset]['pairs']:
                    raise ValueError(f'{label}: its {subset} pairs differ from the first run; compare runs made '
                                     'with the same --pairs, --seed, --episodes and --goal-offset')
        if len({_planner_settings(results) for results in group}) > 1:
            raise ValueError(f'{label}: its runs used different planner settings (solver auto chooses by checkpoint); '
                             'a row is one planner over several models')
    header = f"| policy | settings | {' | '.join(subsets)} |"
    lines = [header, '|' + '---|' * (len(subsets) + 2)]
    for label, group in runs.items():
        cells = ' | '.join(_cell([results['subsets'][s]['planner'] for results in group]) for s in subsets)
        lines.append(f'| {_planner_label(label, group)} | {_planner_settings(group[0])} | {cells} |')
    for policy, source in _baselines(runs):
        if policy == 'oracle':
            oracle = source['oracle_cem']
            settings = (f"CEM {oracle['samples']}x{oracle['elites']}x{oracle['iterations']} with the true simulator "
                        'as its model, cost on the true state')
        else:
            settings = {'random': 'uniform actions over the action space',
                        'replay': "the episode's recorded actions from the start state"}[policy]
        cells = ' | '.join(_cell([source['subsets'][s][policy]]) for s in subsets)
        lines.append(f'| {policy} | {settings} | {cells} |')
    goals = f"goal {first['goal_offset']} steps ahead" if first['goal_offset'] else 'sampled goals'
    return f"{first['world']}: {goals}, budget {first['budget']} steps, success at any step\n\n" + '\n'.join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('runs', nargs='+', type=Path, help='lewm-eval output folders')
    parser.add_argument('--out', type=Path, help='also write the table to this markdown file')
    args = parser.parse_args(argv)
    runs: dict[str, list[dict]] = {}
    for path in args.runs:
        runs.setdefault(path.name, []).append(json.loads((path / 'results.json').read_text()))
    try:
        text = table(runs)
    except ValueError as err:  # runs that do not compare like with like
        raise SystemExit(f'eval_table: {err}') from None
    kinds = pair_kinds(next(iter(runs.values()))[0])
    if kinds is not None:
        text += '\n\n' + kinds_table(runs, kinds)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + '\n')


if __name__ == '__main__':
    main()
