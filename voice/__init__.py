"""The voice service: AT's webhooks, the dial-out and history APIs, the console, and what they stand on."""
