"""controller/core/rollout: progressive delivery as pure values, one idea per module.

- ``gates``: a gate, a measurement, its verdict (judge);
- ``analysis``: measurements from traces, counters and histogram buckets;
- ``commands``: the CLI's promote / abort / rollback requests, as a registry tag;
- ``codec``: the rollout's recorded state and its registry tags (``read``: the one parser);
- ``progress``: what one round asks of the plan, ``Hold | Clear | Running``;
- ``machine``: the step machine (``begin``, ``advance``, ``decide``).
"""
