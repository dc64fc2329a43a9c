"""toyenv.pairs: the one pair type, strengths and Llama 2's margins, graded GeneralPoints pairs."""
import warnings

import pytest
import torch

from toyenv import GPT, GPTConfig, Tokenizer, seed_everything
from toyenv.envs import general_points as gp
from toyenv.pairs import (
    LLAMA2_MARGINS, STRENGTHS, PreferencePair, general_points_pairs, margins_for, sample_preference_pairs,
    strength_counts, strength_for_gap,
)
from toyenv.tokenizer import PAD_ID

from fakes import ModeTracking, SpySampler
from mutmut_isolation import module_scope_unless_mutmut, under_mutmut

TINY = dict(block_size=32, n_layer=2, n_head=2, n_embd=32)
T = torch.tensor


def _gpt(seed=0):
    seed_everything(seed)
    return GPT(GPTConfig(**TINY)).eval()


# --------------------------------------------------------------------------- strengths and graded pairs
def test_margins_for_both_llama2_tables():
    assert STRENGTHS == ("significantly_better", "better", "slightly_better", "negligibly_better")
    assert torch.allclose(margins_for(STRENGTHS), T([1.0, 2 / 3, 1 / 3, 0.0]))
    assert torch.equal(margins_for(STRENGTHS, "large"), T([3.0, 2.0, 1.0, 0.0]))
    assert set(LLAMA2_MARGINS) == {"small", "large"}
    assert margins_for(["better", "better"]).dtype == torch.float32
    with pytest.raises(ValueError, match="strengths\\[1\\]"):
        margins_for(["better", "much better"])
    with pytest.raises(ValueError, match="table"):
        margins_for(["better"], "medium")
    with pytest.raises(ValueError, match="single string"):
        margins_for("better")


def test_strength_buckets():
    want = {8.0: "significantly_better", 4.0: "significantly_better", 3.9: "better", 2.0: "better",
            1.0: "slightly_better", 0.5: "negligibly_better", 0.0: "negligibly_better"}
    assert {g: strength_for_gap(g) for g in want} == want
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="gap"):
            strength_for_gap(bad)


def test_graded_pair_checks_and_converts():
    p = PreferencePair("q", "a", "b", strength="better", reward_chosen=1.0, reward_rejected=-1.0)
    assert p.gap == 2.0
    pp = p.with_margin("large")
    assert isinstance(pp, PreferencePair) and pp.margin == 2.0 and (pp.chosen, pp.rejected) == ("a", "b")
    with pytest.raises(ValueError, match="strength"):
        PreferencePair("q", "a", "b", strength="much_better", reward_chosen=1.0, reward_rejected=-1.0)
    with pytest.raises(ValueError, match="reward_chosen"):
        PreferencePair("q", "a", "b", strength="better", reward_chosen=-1.0, reward_rejected=1.0)
    assert strength_counts([p, p]) == {"significantly_better": 0, "better": 2, "slightly_better": 0,
                                       "negligibly_better": 0}


@pytest.fixture(scope=module_scope_unless_mutmut)
def pairs200():
    return general_points_pairs(200, seed=0)


def test_general_points_pairs_are_graded_by_the_verifier(pairs200):
    assert len(pairs200) == 200
    for p in pairs200:
        assert p.reward_chosen > p.reward_rejected
        cards, rule = p.info["cards"], p.info["face_card_rule"]
        assert p.prompt == gp.make_prompt(cards, rule)
        assert gp.verify(cards, p.chosen, rule).reward == p.reward_chosen
        assert gp.verify(cards, p.rejected, rule).reward == p.reward_rejected
        assert p.strength == ("negligibly_better" if p.info["unsure"] else strength_for_gap(p.gap))
    counts = strength_counts(pairs200)
    assert all(counts[s] > 0 for s in STRENGTHS), counts
    assert sum(counts.values()) == 200


def test_general_points_pairs_are_deterministic(pairs200):
    assert general_points_pairs(200, seed=0) == pairs200
    assert general_points_pairs(20, seed=1) != pairs200[:20]
    quiet = general_points_pairs(50, seed=0, unsure_rate=0.0, face_card_rule="ranked")
    assert strength_counts(quiet)["negligibly_better"] == 0  # verifier rewards are never < 1 apart


def test_general_points_pairs_reject_bad_arguments():
    for kwargs in (dict(n=0), dict(n=5, unsure_rate=1.5), dict(n=5, face_card_rule="queens"),
                   dict(n=5, model=_gpt(), num_samples=1)):
        with pytest.raises(ValueError):
            general_points_pairs(**kwargs)


class GarbageSampler(ModeTracking):
    """Mimics GPT.generate with num_return_sequences: completions drawn (with `generator`) from a list of strings."""

    ANSWERS = ["", "((((", "1/0", "K*J", "\n\n", "9999999", "1+2", "24", "8/(3-8/3)=24", "3*8", "~?", "10+10+4"]

    def __init__(self):
        self.tok = Tokenizer()

    def generate(self, prompts, max_new_tokens, temperature=1.0, eos_id=2, pad_id=0, generator=None,
                 num_return_sequences=1):
        rows, starts = [], []
        for p in prompts:
            for _ in range(num_return_sequences):
                pick = int(torch.randint(len(self.ANSWERS), (1,), generator=generator))
                rows.append(list(p) + self.tok.encode(self.ANSWERS[pick], eos=True))
                starts.append(len(p))
        tokens, real = self.tok.pad_batch(rows, side="right")
        gen_mask = real.clone()
        for b, start in enumerate(starts):
            gen_mask[b, :start] = False  # only the sampled tokens (and EOS) count as generated
        return tokens, gen_mask


def test_sampled_pairs_never_raise_on_garbage():
    model = GarbageSampler()
    pairs = general_points_pairs(30, seed=3, model=model, num_samples=4, batch_size=8)
    assert len(pairs) == 30 and model.training  # train mode restored
    for p in pairs:
        assert p.reward_chosen > p.reward_rejected and p.chosen in GarbageSampler.ANSWERS
        assert gp.verify(p.info["cards"], p.rejected).reward == p.reward_rejected
    assert general_points_pairs(30, seed=3, model=GarbageSampler(), num_samples=4, batch_size=8) == pairs


def test_sampled_pairs_from_a_real_gpt_run_and_are_deterministic():
    # A random GPT writes gibberish (illegal, −3) almost always, so few hands give a pair: fewer pairs, a warning.
    seed_everything(0)
    model = GPT(GPTConfig(block_size=80, n_layer=1, n_head=2, n_embd=16)).eval()
    kwargs = dict(n=4, seed=0, model=model, num_samples=3, max_new_tokens=4, batch_size=4, max_rounds=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, second = general_points_pairs(**kwargs), general_points_pairs(**kwargs)
    assert first == second and len(first) <= 4
    assert all(p.reward_chosen > p.reward_rejected for p in first)


class _SameAnswerModel(torch.nn.Module):
    """Stands in for a policy: records each generate call and answers nothing (every sample graded "illegal")."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def generate(self, ids, max_new_tokens, **kw):
        self.calls.append((ids, kw))
        rows = len(ids) * kw["num_return_sequences"]
        return torch.full((rows, 1 + max_new_tokens), PAD_ID), torch.zeros(rows, 1 + max_new_tokens, dtype=torch.bool)


def test_sampled_pairs_deal_at_most_max_rounds_times_n_hands_and_sample_as_asked():
    """n = 1, max_rounds = 3, batch_size = 2: hands come in batches of 2 then 1 (3 in all), each prompt starts with
    BOS, and the sampler passes the temperature, EOS, PAD and the number of samples per hand through. Every sample
    gets the same reward, so no pair can be made: an empty list and a warning that counts the 3 hands."""
    from toyenv.tokenizer import BOS_ID, EOS_ID

    model = _SameAnswerModel()
    with pytest.warns(UserWarning, match="only 0 of the 1 requested pairs from 3 hands") as record:
        pairs = general_points_pairs(1, seed=0, model=model, num_samples=2, temperature=0.7, max_new_tokens=5,
                                     batch_size=2, max_rounds=3)
    assert pairs == [] and (under_mutmut() or record[0].filename == __file__)  # it points at the caller's line
    assert [len(ids) for ids, _ in model.calls] == [2, 1]
    assert all(row[0] == BOS_ID for ids, _ in model.calls for row in ids)
    for _, kw in model.calls:
        assert kw["temperature"] == 0.7 and kw["eos_id"] == EOS_ID and kw["pad_id"] == PAD_ID
        assert kw["num_return_sequences"] == 2



def test_a_graded_pair_keeps_prompt_texts_and_info_as_a_preference_pair():
    g = PreferencePair("c:", "good", "bad", strength="better", reward_chosen=-1.0, reward_rejected=-3.0,
                       info={"kind": "x"})
    p = g.with_margin()  # Llama 2's small table by default: "better" is 2/3 (stored as float32)
    assert (p.prompt, p.chosen, p.rejected, p.info) == ("c:", "good", "bad", {"kind": "x"})
    assert p.margin == pytest.approx(2 / 3)
    assert g.with_margin("large").margin == 2.0



def test_strength_counts_names_the_bad_pair():
    good = PreferencePair("c:", "a", "b", strength="better", reward_chosen=-1.0, reward_rejected=-3.0)
    with pytest.raises(ValueError, match=r"pairs\[1\]\.strength must be one of"):
        strength_counts([good, PreferencePair.__new__(PreferencePair)])


def _corruptions(expert: str) -> dict[str, set[str]]:
    """Every corruption of an expert answer "expr=claim" that the docstrings promise, written out independently:
    wrong_value: one operator swapped for another, or all numbers joined by + or by *; wrong_numbers: one number
    off by exactly one (and still >= 1); illegal: cut right after an operator, an operator doubled, a unary minus
    in front, or nothing."""
    import re

    expr, claim = expert.split("=")
    ops = [i for i, ch in enumerate(expr) if ch in "+-*/"]
    value = {expr[:i] + op + expr[i + 1:] for i in ops for op in "+-*/" if op != expr[i]}
    numbers = re.findall(r"\d+", expr)
    value |= {"+".join(numbers), "*".join(numbers)}
    off_by_one = {expr[:m.start()] + str(int(m.group()) + d) + expr[m.end():]
                  for m in re.finditer(r"\d+", expr) for d in (1, -1) if int(m.group()) + d >= 1}
    illegal = {expr[:i + 1] for i in ops} | {expr[:i] + expr[i] * 2 + expr[i + 1:] for i in ops} | {"-" + expr, ""}
    return {"correct": {expert}, "wrong_value": {v + "=" + claim for v in value},
            "wrong_numbers": {v + "=" + claim for v in off_by_one}, "illegal": illegal}


def test_pool_pairs_are_graded_as_documented():
    """300 pool pairs: each answer is the expert's or one of its documented corruptions, the info records each
    side's verdict and the noiseless strength, and the label is that strength unless the annotator was unsure."""
    pairs = general_points_pairs(300, seed=3, unsure_rate=0.3)
    kinds, signs = set(), set()
    for p in pairs:
        cards = p.info["cards"]
        forms = _corruptions(gp.expert_answer(cards, "ten", 24))
        for side, text in (("chosen", p.chosen), ("rejected", p.rejected)):
            kind = gp.verify(cards, text, "ten", 24).kind
            assert p.info["kind_" + side] == kind, (p, side)
            assert text in forms[kind], (text, kind, gp.expert_answer(cards, "ten", 24))
            kinds.add(kind)
        assert p.info["gap_strength"] == strength_for_gap(p.reward_chosen - p.reward_rejected)
        assert p.strength == ("negligibly_better" if p.info["unsure"] else p.info["gap_strength"])
        if p.info["kind_rejected"] == "wrong_numbers":
            import re
            a = [int(x) for x in re.findall(r"\d+", gp.expert_answer(cards, "ten", 24).split("=")[0])]
            b = [int(x) for x in re.findall(r"\d+", p.rejected.split("=")[0])]
            signs |= {y - x for x, y in zip(a, b) if x != y}
    assert kinds == {"correct", "wrong_value", "wrong_numbers", "illegal"}
    assert signs == {1, -1}  # cards are moved both up and down
    assert 0 < sum(p.info["unsure"] for p in pairs) < 300


def test_general_points_pairs_settings_at_their_boundaries():
    for bad, match in ((dict(n=0), "n must be an int >= 1"), (dict(n=True), "n must be an int >= 1"),
                       (dict(unsure_rate=1.01), r"unsure_rate must be a probability in \[0, 1\]"),
                       (dict(face_card_rule="aces"), "face_card_rule must be one of"),
                       (dict(model=_SameAnswerModel(), num_samples=1), "num_samples must be >= 2"),
                       (dict(model=_SameAnswerModel(), batch_size=0), "batch_size and max_rounds must be >= 1"),
                       (dict(model=_SameAnswerModel(), max_rounds=0), "batch_size and max_rounds must be >= 1")):
        with pytest.raises(ValueError, match=match):
            general_points_pairs(**{"n": 1, **bad})
    # the smallest allowed values work
    assert [p.strength for p in general_points_pairs(3, unsure_rate=1.0)] == ["negligibly_better"] * 3
    with pytest.warns(UserWarning):
        assert general_points_pairs(1, model=_SameAnswerModel(), num_samples=2, batch_size=1, max_rounds=1) == []
    # another target reaches the task: the pool's answers are graded against 10, not 24
    for p in general_points_pairs(20, seed=1, target=10):
        assert p.info["target"] == 10
        assert gp.verify(p.info["cards"], p.chosen, "ten", 10).kind == p.info["kind_chosen"]


# --------------------------------------------------------------------------- pairs from a gold reward
def _gold(prompts, completions, infos):
    return [float(sum(map(ord, c)) % 5) for c in completions]


def test_sample_preference_pairs(tok):
    gpt = _gpt()
    prompts = ["ab:", "cd:", "ef:", "x:"] * 3
    infos = [{"i": i} for i in range(len(prompts))]
    kw = dict(n_pairs=6, seed=0, max_new_tokens=6, infos=infos)
    pairs = sample_preference_pairs(gpt, tok, prompts, _gold, **kw)
    assert len(pairs) == 6
    for p in pairs:
        (g_c,), (g_r,) = _gold(None, [p.chosen], None), _gold(None, [p.rejected], None)
        assert g_c > g_r and p.margin == g_c - g_r
        assert (p.info["gold_chosen"], p.info["gold_rejected"]) == (g_c, g_r)
        assert p.prompt == prompts[p.info["i"]]
    assert sample_preference_pairs(gpt, tok, prompts, _gold, **kw) == pairs
    assert sample_preference_pairs(gpt, tok, prompts, _gold, **{**kw, "seed": 1}) != pairs
    assert infos[0] == {"i": 0}  # the caller's infos are not modified


def test_sample_preference_pairs_when_gold_ties(tok):
    gpt = _gpt()
    with pytest.warns(UserWarning, match="only 0 of the 5"):
        pairs = sample_preference_pairs(gpt, tok, ["ab:"], lambda p, c, i: [1.0] * len(c), 5, max_new_tokens=4,
                                        max_rounds=2)
    assert pairs == []
    with pytest.raises(ValueError, match="infos"):
        sample_preference_pairs(gpt, tok, ["ab:"], _gold, 1, infos=[{}, {}])
    with pytest.raises(ValueError, match="gold_fn returned 1"):
        sample_preference_pairs(gpt, tok, ["ab:"], lambda p, c, i: [0.0], 1, max_new_tokens=4)


# --------------------------------------------------------------------------- the sampling loop, with a spy sampler
def _spy(monkeypatch):
    import toyenv.pairs as pairs_module
    spy = SpySampler()
    monkeypatch.setattr(pairs_module, "complete", spy)
    return spy


_CPU_POLICY = type("Policy", (), {"device": torch.device("cpu")})()


def test_sampling_visits_prompts_in_batches_of_two_rows_each_and_counts_rounds(monkeypatch):
    from toyenv.tokenizer import EOS_ID
    spy = _spy(monkeypatch)
    prompts = [f"p{i}:" for i in range(5)]
    infos = [{"i": i} for i in range(5)]
    seen = []

    def ties(batch_prompts, completions, batch_infos):
        seen.append((list(batch_prompts), [dict(i) for i in batch_infos]))
        return [0.0] * len(completions)

    with pytest.warns(UserWarning, match=r"only 0 of the 3 requested pairs .*\(15 prompts sampled in 3 round\(s\)\)") \
            as record:
        assert sample_preference_pairs(_CPU_POLICY, None, prompts, ties, 3, seed=7, temperature=0.5,
                                       max_new_tokens=9, infos=infos, batch_size=2, max_rounds=3) == []
    assert under_mutmut() or record[0].filename == __file__  # the warning points at the caller's line
    rows_per_call = [["p0:", "p0:", "p1:", "p1:"], ["p2:", "p2:", "p3:", "p3:"], ["p4:", "p4:"]] * 3
    assert [c["prompts"] for c in spy.calls] == rows_per_call
    assert [s[0] for s in seen] == rows_per_call  # gold_fn gets the prompts of its rows...
    assert [[i["i"] for i in s[1]] for s in seen] == [[0, 0, 1, 1], [2, 2, 3, 3], [4, 4]] * 3  # ...and their infos
    for call in spy.calls:
        assert (call["max_new_tokens"], call["temperature"], call["eos_id"], call["pad_id"]) == (9, 0.5, EOS_ID, PAD_ID)
        assert call["generator"] is spy.calls[0]["generator"]  # one generator for the whole run...
    assert spy.calls[0]["generator"].initial_seed() == 7     # ...seeded with `seed`


def test_sampling_defaults(monkeypatch):
    spy = _spy(monkeypatch)
    prompts = [f"p{i}:" for i in range(257)]
    with pytest.warns(UserWarning, match=r"\(1028 prompts sampled in 4 round\(s\)\)"):
        sample_preference_pairs(_CPU_POLICY, None, prompts, lambda p, c, i: [1.0] * len(c), 1)
    assert [len(c["prompts"]) for c in spy.calls] == [512, 2] * 4  # batches of 256 prompts, 4 rounds
    call = spy.calls[0]
    assert (call["max_new_tokens"], call["temperature"], call["generator"].initial_seed()) == (24, 1.0, 0)


def test_a_tie_skips_only_its_own_prompt(monkeypatch):
    spy = _spy(monkeypatch)
    gold = {"c0.0": 1.0, "c0.1": 1.0, "c0.2": 0.0, "c0.3": 2.0, "c0.4": 3.0, "c0.5": -1.0}
    pairs = sample_preference_pairs(_CPU_POLICY, None, ["a:", "b:", "c:"], lambda p, c, i: [gold[x] for x in c], 2)
    assert [(p.prompt, p.chosen, p.rejected, p.margin) for p in pairs] == [
        ("b:", "c0.3", "c0.2", 2.0), ("c:", "c0.4", "c0.5", 4.0)]
    assert len(spy.calls) == 1  # stops as soon as n_pairs are found


@pytest.mark.parametrize("bad", [(float("nan"), 1.0), (1.0, float("nan")), (float("inf"), 0.0), (0.0, -float("inf"))])
def test_a_non_finite_gold_reward_is_refused_with_its_prompt(monkeypatch, bad):
    _spy(monkeypatch)
    with pytest.raises(ValueError, match="gold_fn returned a NaN or infinite reward for prompt 1"):
        sample_preference_pairs(_CPU_POLICY, None, ["a:", "b:"], lambda p, c, i: [0.0, 1.0, *bad], 5)


def test_sampling_settings_are_refused_and_accepted_at_their_edges(monkeypatch):
    _spy(monkeypatch)
    gold = lambda p, c, i: list(range(len(c)))  # never a tie
    for kwargs, match in [({"n_pairs": 0}, "n_pairs must be >= 1, got 0"),
                          ({"prompts": []}, "^sample_preference_pairs needs at least one prompt$"),
                          ({"batch_size": 0}, "^batch_size and max_rounds must be >= 1$"),
                          ({"max_rounds": 0}, "^batch_size and max_rounds must be >= 1$")]:
        args = {"prompts": ["a:"], "n_pairs": 1, **kwargs}
        with pytest.raises(ValueError, match=match):
            sample_preference_pairs(_CPU_POLICY, None, args.pop("prompts"), gold, **args)
    assert len(sample_preference_pairs(_CPU_POLICY, None, ["a:", "b:"], gold, 2, batch_size=1, max_rounds=1)) == 2


def test_with_margin_needs_a_strength():
    with pytest.raises(ValueError, match="^with_margin needs a pair with a strength label$"):
        PreferencePair("p", "a", "b").with_margin()


class _ScriptedTask:
    """A task whose hands are 'h0:', 'h1:', ... and whose reward reads the prompt: sample s of hand j (completion
    'c<call>.<row>', s = row mod 2) scores scores[j][s], and a reward called with the wrong prompts fails."""

    def __init__(self, scores):
        self.scores, self.dealt = scores, 0

    def sample_prompts(self, rng, m):
        prompts = [f"h{self.dealt + j}:" for j in range(m)]
        self.dealt += m
        return prompts, [{"hand": p} for p in prompts]

    def reward_fn(self, prompts, completions, infos):
        assert [i["hand"] for i in infos] == list(prompts)
        return [self.scores[int(p[1:-1])][int(c.split(".")[1]) % 2] for p, c in zip(prompts, completions)]


def _sampled(monkeypatch, scores, n, max_rounds=1, batch_size=64):
    import numpy as np

    from toyenv.pairs import _sampled_pairs

    spy = _spy(monkeypatch)
    task = _ScriptedTask(scores)
    pairs = _sampled_pairs("model", None, task, n, np.random.default_rng(0), np.random.default_rng(1), None, 0.0,
                           num_samples=2, temperature=1.0, max_new_tokens=4, batch_size=batch_size,
                           max_rounds=max_rounds)
    return pairs, spy


def test_sampled_pairs_skip_only_the_hands_whose_samples_tie(monkeypatch):
    # hand 0's two samples tie, hand 1's differ (3 > 1): one pair, from hand 1, with hand 1's prompt and info
    with pytest.warns(UserWarning, match="only 1 of the 2 requested pairs from 2 hands") as record:
        pairs, spy = _sampled(monkeypatch, {0: (2.0, 2.0), 1: (1.0, 3.0)}, n=2)
    assert under_mutmut() or record[0].filename == __file__  # stacklevel: the line that asked (here, _sampled's)
    assert [(p.prompt, p.chosen, p.rejected, p.info["hand"]) for p in pairs] == [("h1:", "c0.3", "c0.2", "h1:")]
    assert spy.calls[0]["num_return_sequences"] == 2


def test_sampled_pairs_warn_only_when_short(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pairs, _ = _sampled(monkeypatch, {0: (0.0, 1.0), 1: (1.0, 0.0)}, n=2)
    assert [p.prompt for p in pairs] == ["h0:", "h1:"]


def test_strength_counts_names_a_pair_without_a_strength_field():
    with pytest.raises(ValueError, match=r"pairs\[0\]\.strength must be one of"):
        strength_counts([("p:", "a", "b")])


@pytest.mark.parametrize("expert", ["8/(3-8/3)=24", "(10-4)*(5-1)=24", "2*(1+11)=24", "12*2*1*1=24"])
def test_each_corruption_list_is_exactly_the_documented_one(expert):
    """The candidates each corruption writes, against _corruptions' independent writing of the docstrings: the
    same sets, not just answers that happen to grade right."""
    from toyenv.pairs import _illegal_candidates, _wrong_numbers_candidates, _wrong_value_candidates

    expr, claim = expert.split("=")
    forms = _corruptions(expert)
    assert {c + "=" + claim for c in _wrong_value_candidates(expr)} == forms["wrong_value"]
    assert {c + "=" + claim for c in _wrong_numbers_candidates(expr)} == forms["wrong_numbers"]
    assert set(_illegal_candidates(expr)) == forms["illegal"]


def test_the_pool_grades_its_corruptions_against_the_hands_target():
    """Under target 10, (10-10)*6+10 has a one-operator corruption, (10-10)/6+10, that still makes 10: the pool
    must not offer it as "wrong_value", whichever candidate order its generator draws."""
    import numpy as np

    from toyenv.pairs import _answer_pool

    cards = ["K", "Q", "10", "6"]
    for seed in range(30):
        pool = _answer_pool(cards, "ten", 10, np.random.default_rng(seed))
        kinds = [gp.verify(cards, answer, "ten", 10).kind for answer in pool]
        assert kinds == ["correct", "wrong_value", "wrong_numbers", "illegal"], (seed, pool)


def test_a_reward_outside_the_verifiers_table_is_of_kind_other():
    import numpy as np

    from toyenv.pairs import _graded

    pair = _graded("p:", {}, ("a", 0.7), ("b", 0.2), np.random.default_rng(0), 0.0)
    assert (pair.chosen, pair.info["kind_chosen"], pair.info["kind_rejected"]) == ("a", "other", "other")
    pair = _graded("p:", {}, ("a", -3.0), ("b", 5.0), np.random.default_rng(0), 0.0)
    assert (pair.chosen, pair.info["kind_chosen"], pair.info["kind_rejected"]) == ("b", "correct", "illegal")


def test_a_pair_with_an_unknown_strength_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^strength must be one of \('significantly_better', 'better', "
                                         r"'slightly_better', 'negligibly_better'\), got 'great'$"):
        PreferencePair("p:", "a", "b", strength="great")


def test_sampled_general_points_pairs_defaults(monkeypatch):
    spy = _spy(monkeypatch)
    with pytest.warns(UserWarning, match=r"only 0 of the 20 requested pairs from 80 hands: the 4 samples"):
        assert general_points_pairs(20, model="model") == []  # spy answers are illegal: every sample ties
    first = spy.calls[0]
    assert len(first["prompts"]) == 64 and first["num_return_sequences"] == 4          # batch_size, num_samples
    assert (first["max_new_tokens"], first["temperature"]) == (24, 1.0)
    assert first["generator"].initial_seed() == 0
    assert sum(len(c["prompts"]) for c in spy.calls) == 80                               # max_rounds 4 * 20 hands
    spy.calls.clear()
    with pytest.warns(UserWarning):
        general_points_pairs(20, seed=0, model="model", num_samples=4, batch_size=64, max_rounds=4)
    assert spy.calls[0]["prompts"] == first["prompts"]                                   # the same hands: seed 0
