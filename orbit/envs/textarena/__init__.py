"""The TextArena family: TextArena's text games, played by fixed agents or a chat policy, replayed to verify.

A task is (TextArena env id, reset seed, the learner's seat). The learner plays its seat: a scripted or
random-legal agent in self-play, the policy under ``rollout``; the other seat is a fixed agent (a pure
function of its seed, the action index and the game state) or, with ``opponent = "self"``, the same policy.
The learner's conversation holds, per turn, the observation TextArena gives it since its last turn and
its answer, which is stepped as the action text. A record keeps every action of both players; the
verifier re-steps them through a fresh env reset with the task's seed and checks the conversation
against the replay (``verifier``). ``textarena`` itself is imported lazily (it takes seconds).
"""
