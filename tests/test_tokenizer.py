import pytest
import torch
from hypothesis import given, strategies as st

from toyenv import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from toyenv.tokenizer import CHARACTERS

ALPHABET = st.text(alphabet=st.sampled_from(CHARACTERS), max_size=200)


def test_fixed_vocabulary(tok):
    assert (PAD_ID, BOS_ID, EOS_ID) == (0, 1, 2)
    assert tok.vocab_size == 3 + 1 + 95 == len(tok)
    assert tok.encode("\n") == [3] and tok.encode(" ") == [4] and tok.encode("~") == [98]


@given(ALPHABET)
def test_round_trip(text):
    tok = Tokenizer()
    ids = tok.encode(text, bos=True, eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and len(ids) == len(text) + 2
    assert tok.decode(ids) == text


def test_unknown_character_names_character_and_position(tok):
    with pytest.raises(ValueError, match=r"'é' \(U\+00E9\) at position 3"):
        tok.encode("cafébar")
    with pytest.raises(ValueError, match=r"'\\t' .* at position 0"):
        tok.encode("\tx")
    with pytest.raises(TypeError):
        tok.encode(b"bytes")


def test_decode_stops_at_eos_and_skips_specials(tok):
    ids = [BOS_ID] + tok.encode("ab") + [EOS_ID] + tok.encode("zz") + [PAD_ID]
    assert tok.decode(ids) == "ab"
    assert tok.decode(ids, stop_at_eos=False) == "abzz"
    assert tok.decode(ids, skip_special=False) == "<bos>ab"
    with pytest.raises(ValueError, match="token id 99 at position 1"):
        tok.decode([5, 99])


def test_pad_batch_and_decode_batch(tok):
    ids, mask = tok.pad_batch([tok.encode("abc"), tok.encode("x")], side="left")
    assert ids.tolist()[1][:2] == [PAD_ID, PAD_ID] and mask.tolist() == [[True] * 3, [False, False, True]]
    assert tok.decode_batch(ids) == ["abc", "x"]
    assert tok.decode_batch(ids, mask=torch.tensor([[False, True, True], [True, True, True]])) == ["bc", "x"]
    with pytest.raises(ValueError):
        tok.pad_batch([], side="left")


# --------------------------------------------------------------------------- issue 19: D12
def _char(i):
    # Independent of the tokenizer: ids 0-2 are special, 3 is "\n", 4.. are chr(32)..chr(126).
    return "\n" if i == 3 else chr(i - 4 + 32)


@pytest.mark.parametrize("bad, shown", [(3.7, "3.7"), ("5", "'5'"), (True, "True"), (5.0, "5.0"), (None, "None")])
def test_decode_refuses_ids_that_are_not_ints(tok, bad, shown):
    with pytest.raises(TypeError, match=rf"token id {shown} \(\w+\) at position 2 is not an int"):
        tok.decode([40, 41, bad, 42])


def test_decode_refuses_float_and_bool_tensors(tok):
    with pytest.raises(TypeError, match=r"token id 37\.0 \(float\) at position 0"):
        tok.decode(torch.tensor([37.0, 38.0]))
    with pytest.raises(TypeError, match=r"token id True \(bool\) at position 0"):
        tok.decode(torch.tensor([True, False]))  # a mask passed where ids belong


def test_decode_accepts_every_kind_of_int(tok):
    import numpy as np

    ids = [37, 70, 3, 98]
    text = "".join(_char(i) for i in ids)
    assert text == "Ab\n~"
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids)) == text
    assert tok.decode(torch.tensor(ids, dtype=torch.int32)) == text
    assert tok.decode(np.array(ids)) == text
    assert tok.decode([np.int64(i) for i in ids]) == text


def test_decode_batch_refuses_a_mask_of_the_wrong_shape(tok):
    ids = torch.tensor([[37, 38, 39], [40, 41, 42]])
    for shape in [(2, 2), (1, 3), (2, 4), (3, 3), (6,)]:
        with pytest.raises(ValueError, match=rf"mask of shape \({', '.join(map(str, shape))},?\) .* \(2, 3\)"):
            tok.decode_batch(ids, mask=torch.ones(shape, dtype=torch.bool))
    # a ragged list batch: the mask must match every row's length
    with pytest.raises(ValueError, match=r"row 1 has 2 ids but its mask has 3 entries"):
        tok.decode_batch([[37, 38, 39], [40, 41]], mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"2-D"):
        tok.decode_batch(torch.tensor([37, 38]))
    # the right shape still keeps exactly the masked positions
    keep = torch.tensor([[True, False, True], [False, False, True]])
    assert tok.decode_batch(ids, mask=keep) == [_char(37) + _char(39), _char(42)]


def test_pad_preference_batch_puts_each_prompt_once_and_its_two_completions_in_rows_2i_and_2i_plus_1():
    from toyenv.tokenizer import pad_preference_batch

    prompts, prompt_mask, completions, completion_mask = pad_preference_batch(
        [[1, 10, 11], [1, 12]], [[20, 2], [22, 23, 2]], [[21, 21, 21, 2], [2]])
    # written out by hand: prompts padded on the left, completions on the right, chosen before rejected
    assert prompts.tolist() == [[1, 10, 11], [PAD_ID, 1, 12]]
    assert prompt_mask.tolist() == [[True, True, True], [False, True, True]]
    assert completions.tolist() == [[20, 2, PAD_ID, PAD_ID], [21, 21, 21, 2], [22, 23, 2, PAD_ID],
                                    [2, PAD_ID, PAD_ID, PAD_ID]]
    assert completion_mask.sum(1).tolist() == [2, 4, 3, 1] and completion_mask[:, 0].all()
    with pytest.raises(ValueError, match=r"^2 prompts, 2 chosen and 1 rejected completions; give one of each per "
                                         r"pair$"):
        pad_preference_batch([[1], [1]], [[2], [2]], [[2]])
