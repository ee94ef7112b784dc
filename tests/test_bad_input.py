"""Bad configurations stop at build time with one clear message."""
import pytest

from tiny import deep, seg_pair


def test_unknown_placement():
    with pytest.raises(ValueError, match="Unknown prompt placement 'deeep'"):
        seg_pair(prompt=dict(type='Prompter',
                             placements=[dict(kind='deeep', num_tokens=2)]))


def test_prompts_for_missing_block():
    with pytest.raises(ValueError, match=r'block\(s\) \[7\].*blocks 0..3'):
        seg_pair(prompt=dict(type='Prompter', placements=[
            dict(kind='deep', num_tokens=2, blocks=[0, 7])]))


@pytest.mark.parametrize('starts, msg', [
    ([0, 3, 2], 'strictly increasing'),
    ([0, 4], 'outside the backbone'),
    ([1, 2], 'begin with block 0'),
])
def test_bad_group_starts(starts, msg):
    with pytest.raises(ValueError, match=msg):
        seg_pair(prompt=dict(type='Prompter', placements=[
            dict(kind='group', num_tokens=2, starts=starts)]))


def test_image_size_not_multiple_of_patch():
    with pytest.raises(ValueError, match='not a multiple of the patch size'):
        seg_pair(img_size=36)


def test_trainable_pattern_that_matches_nothing():
    with pytest.raises(ValueError, match='match no backbone parameter'):
        seg_pair(prompt=deep(), trainable=['norm.*'])


def test_unknown_prompter_type():
    with pytest.raises(KeyError, match='VPTDeepest'):
        seg_pair(prompt=dict(type='VPTDeepest'))
