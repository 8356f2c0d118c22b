"""Success against decision time for each planner solver and search budget, on the same pairs, in one run.

    python training/bench_solvers.py --checkpoint runs/push_t_small/model.safetensors --world push_t \
        --pairs out/push_t/heldout --episodes 50 --goal-offset 25 --budget 50 --out out/push_t/solvers

Solvers (``mpc.solver``): ``cem`` (the search alone), ``prior+cem`` (the action prior proposes a share of the
candidates) and ``prior`` (the prior's mean, no search; it has no budget). Budgets are CEM samples x elites x
iterations, or a named budget (``node``: the planner node's default, 64x8x3; ``paper``: 300x30x30). Rows are
every solver at every budget, or exactly the ``--rows`` given, e.g. ``cem:paper
prior+cem:16x4x1:horizon=5,prior-share=0.5 prior``: after a second colon, the row's own lewm-eval options,
which win over the shared ones. Decision times are also given relative to ``cem`` at the node's default budget
(no options of its own) when that row is run. Every row is a ``lewm-eval`` run on the same pairs and
seed, so rows differ only in the planner; decision time is the p50 / p90 of the plans' wall-clock time on
this machine (name the CPU when you quote it). Any other ``lewm-eval`` option (e.g. ``--horizon 5 --mode
receding``) is passed to every row. Prints a table, writes ``solvers.json`` and ``solvers.png`` (success
against p50 decision time).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lewm_ros.planning.cem import BUDGETS, parse_budget
from lewm_ros.planning.mpc import SOLVERS
from lewm_ros.tools import evaluate


def budget_args(budget: str) -> list[str]:
    samples, elites, iterations = parse_budget(budget)
    return ['--samples', str(samples), '--elites', str(elites), '--iterations', str(iterations)]


def parse_row(row: str) -> tuple[str, str, list[str]]:
    """'SOLVER:BUDGET[:key=value,...]' (or 'prior[::key=value,...]') -> (solver, budget, lewm-eval arguments);
    budget '-' for the prior, which has none. key=value pairs are this row's own lewm-eval options
    (``prior+cem:16x4x1:horizon=5,prior-share=0.5``)."""
    solver, _, rest = row.partition(':')
    budget, _, options = rest.partition(':')
    pairs = [option.partition('=') for option in options.split(',') if option]
    try:
        if budget:
            parse_budget(budget)
        well_formed = all(sep and key for key, sep, _ in pairs)
        if solver not in SOLVERS or (solver == 'prior') != (budget == '') or not well_formed:
            raise ValueError(f'want SOLVER:BUDGET[:key=value,...] or prior[::key=value,...], SOLVER in {SOLVERS}')
    except ValueError as error:
        raise SystemExit(f'bench_solvers: bad row {row!r}: {error}') from None
    return solver, budget or '-', [arg for key, _, value in pairs for arg in (f'--{key}', value)]


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for solver, marker in zip(SOLVERS, 'osD', strict=True):  # points only: rows may differ in more than budget
        mine = [r for r in rows if r['solver'] == solver]
        if mine:
            ax.scatter([r['plan_ms_p50'] for r in mine], [r['success'] for r in mine], marker=marker, label=solver)
            for index, r in enumerate(mine):  # alternate above / below so that neighbours stay readable
                label = r['budget'].replace('--', '').replace('(', '').replace(')', '')
                ax.annotate(label, (r['plan_ms_p50'], r['success']), fontsize=7, textcoords='offset points',
                            xytext=(4, 5 if index % 2 == 0 else -10))
    ax.set_xscale('log')
    ax.set_xlabel('decision time per plan, p50 (ms)')
    ax.set_ylabel('success %')
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--budgets', nargs='+', default=['paper', 'node', '32x4x2'])
    parser.add_argument('--solvers', nargs='+', default=list(SOLVERS), choices=SOLVERS)
    parser.add_argument('--rows', nargs='+', help='exactly these solver:budget rows instead of every solver at '
                        "every budget, e.g. cem:64x8x3 prior+cem:16x4x1 prior")
    parser.add_argument('--out', type=Path, default=Path('out/solvers'))
    args, passed = parser.parse_known_args(argv)
    if args.rows:
        runs = [parse_row(row) for row in args.rows]
    else:
        runs = [(solver, budget, []) for solver in args.solvers
                for budget in (args.budgets if solver != 'prior' else ['-'])]
    rows = []
    for index, (solver, budget, options) in enumerate(runs):
        search = budget_args(budget) if budget != '-' else []
        folder = args.out / f"{index:02d}_{solver.replace('+', '_')}_{budget}"
        results = evaluate.run([*passed, *search, *options, '--solver', solver, '--no-random', '--no-replay',
                                '--subsets', 'standard', '--no-progress', '--out', str(folder)])
        entry = results['subsets']['standard']['planner']
        label = budget + (f" ({' '.join(options)})" if options else '')
        rows.append({'solver': solver, 'budget': label, 'success': 100 * entry['success_rate'],
                     'ci95': [100 * b for b in entry['ci95']], 'episodes': entry['episodes'],
                     'plan_ms_p50': entry['plan_ms_p50'], 'plan_ms_p90': entry['plan_ms_p90']})
        print(f"{solver + ' ' + label:22s} success {rows[-1]['success']:5.1f}%  plans p50 "
              f"{entry['plan_ms_p50']:8.1f} ms  p90 {entry['plan_ms_p90']:8.1f} ms", flush=True)
    default = next((r['plan_ms_p50'] for r in rows if r['solver'] == 'cem' and r['budget'] in ('node', 'x'.join(
        map(str, BUDGETS['node'])))), None)
    for r in rows:
        r['time_vs_node_default'] = None if default is None else r['plan_ms_p50'] / default
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'solvers.json').write_text(json.dumps(rows, indent=1))
    plot(rows, args.out / 'solvers.png', f"{results['world']}: success against decision time")
    print('\n| solver | budget | success | plan p50 | plan p90 | p50 / cem node |\n|---|---|---|---|---|---|')
    for r in rows:
        ratio = '-' if r['time_vs_node_default'] is None else f"{r['time_vs_node_default']:.2f}x"
        print(f"| {r['solver']} | {r['budget']} | {r['success']:.0f}% [{r['ci95'][0]:.0f}, {r['ci95'][1]:.0f}] "
              f"(n={r['episodes']}) | {r['plan_ms_p50']:.0f} ms | {r['plan_ms_p90']:.0f} ms | {ratio} |")
    return rows


if __name__ == '__main__':
    main()
