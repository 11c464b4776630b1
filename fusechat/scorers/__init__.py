"""Scorers the score stage and the evaluation share: math answers, code in the sandbox, an LLM judge, a reward model."""
