"""The course's toy worlds, registered with gymnasium on `import toyenv`.

- ``toyenv/GeneralPoints-v0``: the 24-points card game (Chu et al. 2025), rule
  ``face_card_rule="ten"`` in distribution, ``"ranked"`` out of distribution.
- ``toyenv/Navigation-v0``: V-IRL-style text navigation, ``action_space_kind=
  "absolute"`` in distribution, ``"relative"`` out of distribution.
"""
from gymnasium.envs.registration import register, registry

_ENVS = {
    "toyenv/GeneralPoints-v0": "toyenv.envs.general_points:GeneralPointsEnv",
    "toyenv/Navigation-v0": "toyenv.envs.navigation:NavigationEnv",
}

for _id, _entry in _ENVS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry)
