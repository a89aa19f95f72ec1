"""The search: the one trial driver, its runners, the budget, studies opened and loaded."""
