"""DQN in a random subspace through stable-baselines3: policies (:mod:`.policies`) and the trainer."""
