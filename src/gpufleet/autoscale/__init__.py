"""Fleet control: the policy that sizes a fleet, the controller that applies it, the providers
that start and stop machines."""
