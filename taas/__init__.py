"""taas: Tap-as-a-Service on Open vSwitch."""
