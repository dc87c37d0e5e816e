"""Studies built on the harness, kept out of the trainer's package (chrono_membench holds the nouns a run is made
of; nothing in it imports these): the planted-signal validation (planted.py), the planning arithmetic (plan.py),
the comparison of arms over seeds (comparison.py) and a run's closing summary (summary.py). Their commands live in
experiments/ and analysis/.
"""
