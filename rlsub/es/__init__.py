"""Evolution Strategies over theta_d (OpenAI-ES, Salimans et al. 2017), MPI-parallel and masterless."""
