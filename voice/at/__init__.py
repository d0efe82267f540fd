"""Africa's Talking: the client wrapper (the one place that talks to AT), the simulated AT and the call simulator."""
