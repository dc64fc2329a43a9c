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
