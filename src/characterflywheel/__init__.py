"""characterflywheel: the CharacterFlywheel process for character chat LLMs."""

__version__ = "0.1.0"
