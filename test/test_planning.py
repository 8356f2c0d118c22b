"""CEM on toy costs and the MPC's bookkeeping (history, executed actions, shifting, modes), without ROS."""

import copy

import numpy as np
import pytest
import torch

from lewm_ros.model.checkpoint import Checkpoint
from lewm_ros.model.world_model import WorldModel
from lewm_ros.planning import CEM, MPC, Actuation, CEMConfig, LatentCost, MPCConfig, PlanWorker, normalised_bounds
from lewm_ros.planning.cem import coloured_noise

from .tiny import randomise_modulation, tiny_config

H, K = 4, 6


def quadratic(target):
    def cost(candidates):  # (N, H, K) -> (N,)
        return (candidates - target).square().sum(dim=(1, 2))
    return cost


def solve(target, iterations, warm_start=None, seed=0, proposal=None):
    cem = CEM(CEMConfig(samples=200, elites=20, iterations=iterations, horizon=H, min_std=0.01, seed=seed),
              torch.full((K,), -2.0), torch.full((K,), 2.0))
    return cem.plan(quadratic(target), warm_start, proposal=proposal, keep_best=proposal is not None)


def test_cem_finds_the_optimum_of_a_quadratic():
    target = torch.linspace(-1.5, 1.5, H * K).reshape(H, K)
    mean, cost = solve(target, iterations=30)
    assert mean.shape == (H, K) and cost.shape == ()
    torch.testing.assert_close(mean, target, atol=0.02, rtol=0)
    assert cost == quadratic(target)(mean[None])[0]


def test_cem_never_leaves_the_bounds():
    low, high = torch.tensor([-1.0, -0.5, 0.0]), torch.tensor([1.0, 0.5, 0.2])
    seen = []

    def cost(candidates):  # the optimum (3, 3, 3) lies outside the box
        seen.append(candidates.clone())
        return (candidates - 3.0).square().sum(dim=(1, 2))

    cem = CEM(CEMConfig(samples=50, elites=5, iterations=10, horizon=2, init_std=3.0), low, high)
    mean, _ = cem.plan(cost, warm_start=torch.full((2, 3), 10.0))  # even an out-of-bounds warm start
    candidates = torch.cat(seen)
    assert (candidates >= low).all() and (candidates <= high).all()
    torch.testing.assert_close(mean, high.expand(2, 3), atol=0.02, rtol=0)


def test_warm_start_reaches_the_same_cost_in_fewer_iterations():
    target = torch.linspace(-1.0, 1.0, H * K).reshape(H, K)
    threshold = 0.05

    def iterations_needed(warm_start):
        for iterations in range(1, 30):
            if solve(target, iterations, warm_start)[1] < threshold:
                return iterations
        return 30

    cold = iterations_needed(None)
    warm = iterations_needed(target + 0.1)  # last plan, shifted: close to the new optimum
    assert warm < cold, (warm, cold)


def test_a_proposal_draws_its_share_of_the_first_round_and_a_wrong_one_costs_samples_not_the_plan():
    target = torch.linspace(-1.0, 1.0, H * K).reshape(H, K)
    seen = []

    def cost(candidates):
        seen.append(candidates.clone())
        return quadratic(target)(candidates)

    cem = CEM(CEMConfig(samples=40, elites=8, iterations=1, horizon=H, init_std=1.0), torch.full((K,), -2.0),
              torch.full((K,), 2.0))
    proposal_mean = torch.full((H, K), 1.5)
    cem.plan(cost, proposal=(proposal_mean, torch.full((H, K), 1e-3), 0.25), keep_best=True)
    first = seen[0]  # (40, H, K): 30 around 0 with std 1, then 10 within 1e-3 of the proposal, its mean first
    assert torch.equal(first[30], proposal_mean) and (first[30:] - proposal_mean).abs().max() < 0.01
    assert (first[1:30] - proposal_mean).abs().max() > 1.0

    sharp = (target, torch.full((H, K), 0.05), 0.5)  # a good proposal: one round lands near the optimum
    wrong = (-target, torch.full((H, K), 0.05), 0.5)  # a wrong one: the search's own samples carry it
    good_cost = solve(target, 1, proposal=sharp)[1]
    wrong_cost, plain_cost = solve(target, 20, proposal=wrong)[1], solve(target, 20)[1]
    assert good_cost < 0.2 * solve(target, 1)[1]
    assert wrong_cost < 0.05 and plain_cost < 0.05


def test_cem_is_seedable():
    target = torch.ones(H, K)
    a, b, c = solve(target, 3, seed=1)[0], solve(target, 3, seed=1)[0], solve(target, 3, seed=2)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize('steps', [1, 2, 24, 25])
def test_coloured_noise_has_unit_variance_and_reaches_further_as_beta_grows(steps):
    generator = torch.Generator().manual_seed(0)
    reach = []
    for beta in (0.0, 1.0, 2.0):
        noise = coloured_noise(20000, steps, 2, beta, generator)  # (N, T, A)
        assert noise.shape == (20000, steps, 2)
        assert noise.var().item() == pytest.approx(1.0, abs=0.05)
        reach.append(noise.sum(dim=1).std().item())  # spread of where a sampled sequence ends up
    if steps > 2:  # correlated steps keep a direction: white noise only spreads as sqrt(steps)
        assert reach[0] == pytest.approx(steps ** 0.5, rel=0.05) and reach[0] < reach[1] < reach[2], reach


def test_coloured_noise_finds_a_far_goal_that_white_noise_misses():
    """A cost that is flat (exactly 1 in float32) except in a narrow basin far from the start, like the latent
    distance to a far goal: 10 steps of 1-D actions whose sum must reach 11. White noise spreads the sum by only
    ~3.2, so it rarely sees the basin; correlated noise keeps a direction and gets there."""
    def cost(candidates):  # (N, H, K) -> (N,)
        return 1.0 - torch.exp(-(candidates.sum(dim=(1, 2)) - 11.0).square() / 2)

    def solved(beta: float) -> int:  # out of 20 seeds
        return sum(CEM(CEMConfig(samples=64, elites=6, iterations=3, horizon=2, noise_beta=beta, seed=seed),
                       torch.full((5,), -1.5), torch.full((5,), 1.5), action_dim=1).plan(cost)[1].item() < 0.5
                   for seed in range(20))

    white, coloured = solved(0.0), solved(3.0)
    assert white <= 5 and coloured >= 15, (white, coloured)


def test_config_validation_says_why():
    with pytest.raises(ValueError, match='elites'):
        CEMConfig(samples=10, elites=20).validate()
    with pytest.raises(ValueError, match='noise_beta'):
        CEMConfig(noise_beta=-1).validate()
    with pytest.raises(ValueError, match='mode'):
        MPCConfig(mode='lazy').validate()
    with pytest.raises(ValueError, match='objective'):
        MPCConfig(objective='nearest').validate()
    with pytest.raises(ValueError, match='capture'):
        MPCConfig(capture='graphs').validate()


# --- MPC ----------------------------------------------------------------------------------------
FS, A, SIZE = 5, 2, 16
MEAN, STD = np.array([0.5, -0.5], np.float32), np.array([2.0, 0.5], np.float32)


@pytest.fixture(scope='module')
def checkpoint():
    torch.manual_seed(3)  # a model whose closest block differs between plans (test_objective_closest...)
    model = randomise_modulation(WorldModel(tiny_config(SIZE, action_dim=A, frameskip=FS)), std=0.5)
    return Checkpoint(model.eval(), MEAN, STD)


def make_mpc(checkpoint, mode='receding', horizon=3, execute_steps=FS, iterations=2, objective='final'):
    mpc = MPC(checkpoint, Actuation([-1.0, -2.0], [3.0, 1.0]),
              CEMConfig(samples=16, elites=4, iterations=iterations, horizon=horizon),
              MPCConfig(mode=mode, execute_steps=execute_steps, objective=objective))
    mpc.set_goal(frame(-1))
    return mpc


def frame(k):
    return np.full((SIZE, SIZE, 3), k % 256, np.uint8)


def run(mpc, steps):
    """Observe frame k and act at each step k; returns the plans made and the actions executed."""
    plans, actions = [], []
    for _ in range(steps):
        mpc.observe(frame(mpc.step))
        if mpc.needs_plan:
            plans.append(mpc.replan())
        actions.append(mpc.act())
    return plans, np.array(actions)


def test_history_holds_frames_at_block_stride_and_the_blocks_between(checkpoint):
    mpc = make_mpc(checkpoint)
    _, actions = run(mpc, 17)
    mpc.observe(frame(17))
    request = mpc.request()
    assert request.step == 17
    # history 3 + 1 more frame for the surprise: steps 2, 7, 12, 17
    np.testing.assert_array_equal(request.frames[:, 0, 0, 0], [2, 7, 12, 17])
    expected = ((actions[2:17] - MEAN) / STD).reshape(3, FS * A)
    np.testing.assert_allclose(request.blocks, expected, rtol=1e-6)


def test_executes_the_plan_in_order_and_replans_every_k_steps(checkpoint):
    mpc = make_mpc(checkpoint, execute_steps=3)
    plans, actions = run(mpc, 9)
    assert [plan.step for plan in plans] == [0, 3, 6]
    for plan in plans:
        np.testing.assert_allclose(actions[plan.step:plan.step + 3], plan.actions[:3])
        assert plan.actions.shape == (3 * FS, A) and np.isfinite(plan.cost)
        assert (plan.actions >= [-1.0, -2.0]).all() and (plan.actions <= [3.0, 1.0]).all()
    assert plans[0].surprise is None and plans[2].surprise >= 0.0  # 6 steps: one whole block behind


def test_warm_start_is_the_last_plan_shifted_by_what_was_executed(checkpoint):
    mpc = make_mpc(checkpoint, execute_steps=2)
    (first,), _ = run(mpc, 2)
    mpc.observe(frame(2))
    warm = mpc.request().warm_start.reshape(-1, A)
    np.testing.assert_array_equal(warm[:-2], first.blocks.reshape(-1, A)[2:])
    np.testing.assert_array_equal(warm[-2:], 0.0)  # the tail: the mean action


def test_a_late_plan_skips_the_steps_executed_meanwhile(checkpoint):
    mpc = make_mpc(checkpoint)
    mpc.observe(frame(0))
    request = mpc.request()
    held = [mpc.act() for _ in range(2)]  # planning takes two control steps
    np.testing.assert_array_equal(held, [[0.0, 0.0]] * 2)  # zero velocity
    plan = mpc.solve(request)
    assert mpc.install(plan)
    np.testing.assert_allclose(mpc.act(), plan.actions[2], rtol=1e-6)


def test_paper_mode_executes_the_whole_plan_and_shrinking_mode_keeps_the_arrival_time(checkpoint):
    plans, _ = run(make_mpc(checkpoint, mode='paper', horizon=2), 25)
    assert [plan.step for plan in plans] == [0, 10, 20]
    plans, _ = run(make_mpc(checkpoint, mode='shrinking', horizon=3, execute_steps=5), 35)
    assert [len(plan.blocks) for plan in plans] == [3, 2, 1, 3, 2, 1, 3]


def test_bad_plans_and_plans_from_before_a_reset_are_not_executed(checkpoint):
    mpc = make_mpc(checkpoint)
    mpc.observe(frame(0))
    plan = mpc.solve(mpc.request())
    plan.blocks[0, 0] = np.nan
    assert not mpc.install(plan)
    np.testing.assert_array_equal(mpc.act(), [0.0, 0.0])
    assert mpc.holding

    mpc.observe(frame(1))
    request = mpc.request()
    mpc.reset()
    assert not mpc.install(mpc.solve(request))
    assert mpc.plan is None and mpc.step == 0


def test_latent_cost_adds_the_intermediate_distances(checkpoint):
    model = checkpoint.model
    with torch.inference_mode():
        emb = model.encode(torch.as_tensor(np.stack([frame(0), frame(5)])))[None]  # (1, 2, D)
        goal = model.encode(torch.as_tensor(frame(9)))
        candidates = torch.randn(3, 2, FS * A)
        past = torch.zeros(1, 1, FS * A)
        distances = LatentCost(model, emb, past, goal).distances(candidates)
        torch.testing.assert_close(LatentCost(model, emb, past, goal)(candidates), distances[:, -1])
        torch.testing.assert_close(LatentCost(model, emb, past, goal, 2.0)(candidates),
                                   distances[:, -1] + 2.0 * distances.mean(1))
        closest = LatentCost(model, emb, past, goal, objective='closest')
        torch.testing.assert_close(closest(candidates), distances.min(1).values)
        assert closest.arrival(candidates[1]).item() == distances[1].argmin().item() + 1
        assert LatentCost(model, emb, past, goal).arrival(candidates[1]).item() == 2


def test_objective_closest_executes_a_plan_up_to_its_closest_block(checkpoint):
    mpc = make_mpc(checkpoint, mode='paper', horizon=4, objective='closest')
    plans, actions = run(mpc, 40)
    assert [plan.step for plan in plans] == list(np.cumsum([0] + [FS * plan.arrival for plan in plans[:-1]]))
    for plan in plans[:-1]:
        executed = FS * plan.arrival
        assert 1 <= plan.arrival <= 4
        np.testing.assert_array_equal(actions[plan.step:plan.step + executed], plan.actions[:executed])
    assert len({plan.arrival for plan in plans}) > 1  # the closest block differs between plans


def test_normalised_bounds_tile_the_raw_limits_per_block():
    low, high = normalised_bounds([-1.0, -2.0], [3.0, 1.0], lambda raw: (raw - MEAN) / STD, frameskip=3)
    np.testing.assert_allclose(low.numpy(), np.tile([-0.75, -3.0], 3))
    np.testing.assert_allclose(high.numpy(), np.tile([1.25, 3.0], 3))


def test_actuation_scales_clamps_and_holds_in_one_place():
    velocity = Actuation([-1.0, -2.0], [1.0, 2.0], scale=2.0)
    np.testing.assert_array_equal(velocity.command([0.25, 3.0]), [0.5, 2.0])  # scaled, then clamped
    np.testing.assert_array_equal(velocity.hold(), [0.0, 0.0])
    np.testing.assert_array_equal(velocity.model_limits[1], [0.5, 1.0])
    position = Actuation([-3.0, -3.0], [3.0, 3.0], kind='position')
    assert position.hold() is None  # not measured yet: nothing to command
    np.testing.assert_array_equal(position.hold([0.5, 4.0]), [0.5, 3.0])
    with pytest.raises(ValueError, match='low <= high'):
        Actuation([1.0], [-1.0])
    with pytest.raises(ValueError, match='scale'):
        Actuation([-1.0], [1.0], scale=0.0)
    twist = Actuation([-1.0, -6.0], [1.0, 6.0], scale=[1.0, 6.0])  # m/s and rad/s per model unit
    np.testing.assert_array_equal(twist.command([0.5, 0.5]), [0.5, 3.0])
    np.testing.assert_array_equal(twist.to_model([0.5, 3.0]), [0.5, 0.5])
    with pytest.raises(ValueError, match='one per each'):
        Actuation([-1.0, -1.0], [1.0, 1.0], scale=[1.0, 2.0, 3.0])


def test_position_holds_record_the_measured_positions_in_the_history(checkpoint):
    mpc = MPC(checkpoint, Actuation([-3.0, -3.0], [3.0, 3.0], scale=2.0, kind='position'),
              CEMConfig(samples=16, elites=4, iterations=1, horizon=1))
    mpc.set_goal(frame(-1))
    mpc.observe(frame(0))
    assert mpc.act() is None and 0 not in mpc.actions  # position unknown: nothing sent, nothing recorded
    measured = np.array([0.5, -1.0])
    for step in range(1, 11):
        mpc.observe(frame(step))
        np.testing.assert_array_equal(mpc.act(measured=measured), measured)  # holds where the arm is
    mpc.observe(frame(11))
    request = mpc.request()
    # the blocks between the frames are the held positions in model units (robot / scale), z-scored
    np.testing.assert_allclose(request.blocks, np.tile((measured / 2.0 - MEAN) / STD, (2, FS)), rtol=1e-6)
    np.testing.assert_array_equal(request.frames[:, 0, 0, 0], [1, 6, 11])  # step 0's gap ends the history


def test_a_plan_depends_on_its_request_only(checkpoint):
    mpc = make_mpc(checkpoint)
    mpc.observe(frame(0))
    request = mpc.request()
    first = mpc.solve(request)
    mpc.solve(request)  # another plan in between, and new settings of the same search
    mpc.configure(CEMConfig(samples=16, elites=4, iterations=2, horizon=3), mpc.config)
    again = mpc.solve(mpc.request())
    np.testing.assert_array_equal(first.blocks, again.blocks)


def test_the_worker_owns_the_request_in_flight_and_installs_its_plan(checkpoint):
    import threading

    mpc, lock, done = make_mpc(checkpoint), threading.Lock(), threading.Event()
    reports = []
    worker = PlanWorker(mpc, lock, lambda plan, installed, request: (reports.append((plan, installed)), done.set()),
                        lambda err: reports.append(err))
    try:
        with lock:
            mpc.observe(frame(0))
            assert mpc.needs_plan and not worker.busy
            worker.submit(mpc.request(), now=0.0)
            assert worker.busy and worker.waited(2.5) == 2.5
            with pytest.raises(RuntimeError, match='already'):
                worker.submit(mpc.request())
        assert done.wait(30)
        (plan, installed), = reports
        assert installed and mpc.plan is plan and not worker.busy and worker.waited(10.0) == 0.0
    finally:
        worker.stop()


# --- the official-style baseline -------------------------------------------------------------------
def test_official_loop_scores_as_many_candidates_and_reaches_the_same_optimum(checkpoint, monkeypatch):
    """The baseline bench_plan times us against searches as much as our CEM and finds what it finds."""
    import lewm_ros.planning.official as official

    torch.manual_seed(1)
    model = copy.deepcopy(checkpoint.model)
    for block in model.predictor.blocks:  # actions must matter for a search to mean anything
        torch.nn.init.normal_(block.modulation[1].weight, std=0.3)
    start, goal = torch.as_tensor(frame(10)), torch.as_tensor(frame(200))
    samples, elites, iterations, horizon = 200, 20, 12, 2
    scored = {'official': 0, 'ours': 0}
    rollout = official._rollout_last

    def counted(model, first, candidates):
        scored['official'] += candidates.shape[0]
        return rollout(model, first, candidates)

    monkeypatch.setattr(official, '_rollout_last', counted)
    generator = torch.Generator().manual_seed(0)
    theirs = official.official_plan(model, start, goal, samples, elites, iterations, horizon, generator)

    with torch.inference_mode():
        cost = LatentCost(model, model.encode(start[None])[None], torch.zeros(1, 0, FS * A),
                          model.encode(goal[None])[0])
    K = FS * A

    def counted_cost(candidates):
        scored['ours'] += candidates.shape[0]
        return cost(candidates)

    big = torch.full((K,), 1e3)
    _, our_cost = CEM(CEMConfig(samples=samples, elites=elites, iterations=iterations, horizon=horizon,
                                   init_std=1.0, min_std=0.0), -big, big).plan(counted_cost)
    assert scored['ours'] == scored['official'] + 1 == samples * iterations + 1  # + our final mean's cost
    with torch.inference_mode():
        their_cost = cost(theirs[None])[0]
        zero_cost = cost(torch.zeros(1, horizon, K))[0]
    assert their_cost < 0.5 * zero_cost and our_cost < 0.5 * zero_cost
    assert abs(float(their_cost - our_cost)) < 0.1 * float(zero_cost)  # measured: 0.131 vs 0.133 of 0.908


# --- solvers: cem, prior+cem, prior --------------------------------------------------------------
@pytest.fixture(scope='module')
def with_prior(checkpoint):
    from lewm_ros.model.prior import ActionPrior, PriorConfig

    torch.manual_seed(3)
    cfg = checkpoint.config
    prior = ActionPrior(PriorConfig(horizon=3, hidden=16), cfg.embed_dim, cfg.history, cfg.action_block_dim).eval()
    torch.nn.init.normal_(prior.head.weight, std=0.5)  # a prior with opinions, some beyond the limits
    torch.nn.init.normal_(prior.head.bias, std=2.0)
    return Checkpoint(checkpoint.model, MEAN, STD, prior=prior)


@pytest.mark.parametrize('solver', ['cem', 'prior+cem', 'prior'])
def test_every_solver_respects_the_bounds_and_returns_finite_plans(with_prior, solver):
    mpc = make_mpc(with_prior, mode='receding', horizon=4)  # longer than the prior's 3 blocks: padded
    mpc.configure(mpc.cem.config, MPCConfig(mode='receding', execute_steps=FS, solver=solver))
    plans, actions = run(mpc, 3 * FS)
    assert plans and all(plan.finite and plan.blocks.shape == (4, FS * A) for plan in plans)
    low, high = mpc.actuation.model_limits
    assert all(np.all(plan.actions >= low - 1e-6) and np.all(plan.actions <= high + 1e-6) for plan in plans)
    assert np.all(np.isfinite(actions))


@pytest.mark.parametrize('observed', [0, 60, 120, 180, 240])
def test_prior_and_cem_is_never_worse_than_the_priors_mean(with_prior, observed):
    costs = {}
    for solver in ('prior', 'prior+cem'):
        mpc = make_mpc(with_prior, horizon=3)
        mpc.configure(CEMConfig(samples=8, elites=2, iterations=2, horizon=3), MPCConfig(solver=solver))
        mpc.observe(frame(observed))
        costs[solver] = mpc.replan().cost
    assert costs['prior+cem'] <= costs['prior'] + 1e-6  # the same cost function, the same observation


def test_auto_is_prior_and_cem_at_its_measured_budget_with_a_prior_and_cem_without(checkpoint, with_prior):
    search = CEMConfig(samples=64, elites=8, iterations=3, horizon=3)
    with_one, without = make_mpc(with_prior, horizon=3), make_mpc(checkpoint, horizon=3)
    for mpc in (with_one, without):
        mpc.configure(search, MPCConfig(solver='auto'))
        mpc.observe(frame(0))
        assert mpc.replan().finite
    assert with_one.solver == 'prior+cem' and (with_one.cem.config.samples, with_one.cem.config.elites,
                                               with_one.cem.config.iterations) == (16, 4, 1)
    assert with_one.cem.config.horizon == 3  # only the budget is auto's
    assert without.solver == 'cem' and without.cem.config == search
    with_one.configure(search, MPCConfig(solver='prior+cem'))  # asked for by name: the search as given
    assert with_one.cem.config == search
    for mpc in (with_one, without):  # auto at the full budget: the search as given, the prior where there is one
        mpc.configure(search, MPCConfig(solver='auto', prior_budget='cem'))
    assert (with_one.solver, with_one.cem.config) == ('prior+cem', search)
    assert (without.solver, without.cem.config) == ('cem', search)
    assert MPCConfig().solver == 'auto' and MPCConfig().prior_budget == 'quick'


def test_prior_solvers_need_a_prior(checkpoint):
    mpc = make_mpc(checkpoint)
    with pytest.raises(ValueError, match='action prior'):
        mpc.configure(mpc.cem.config, MPCConfig(solver='prior'))


def test_the_compiled_rollout_scores_like_the_eager_one_and_plans_within_bounds(checkpoint):
    """capture=compile (torch.compile; CUDA graphs on a GPU) is checked against the eager rollout here, on CPU."""
    pytest.importorskip('torch._inductor')
    mpc = make_mpc(checkpoint, horizon=3)
    mpc.configure(mpc.cem.config, MPCConfig(mode='receding', execute_steps=FS, capture='compile'))
    compiled = mpc._rollout('compile')
    assert compiled is mpc._rollout('compile') and mpc._rollout('none') == checkpoint.model.rollout
    generator = torch.Generator().manual_seed(0)
    history = torch.randn(1, 3, checkpoint.config.embed_dim, generator=generator)
    actions = torch.randn(16, 2 + 3, FS * A, generator=generator)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(history, actions), checkpoint.model.rollout(history, actions),
                                   atol=1e-5, rtol=1e-4)
    plans, _ = run(mpc, 2 * FS)
    low, high = mpc.actuation.model_limits
    assert plans and all(plan.finite and np.all(plan.actions >= low - 1e-6) and np.all(plan.actions <= high + 1e-6)
                         for plan in plans)
