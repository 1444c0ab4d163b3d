"""Pulumi components: thin wiring around the pure logic in imagefactory/."""
