"""The library behind S5.ipynb and the commands beside it: the data (data), the recipe, the step and the loop
(training), the fast path (fast), networks named as module:Class (networks), runs kept as files (checkpoint),
pictures and plots (pictures), the look inside a network (explain), an assignment's budget (budget), and the
machine (env). model.py and utils.py, the original's face, gather from here."""
