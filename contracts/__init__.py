"""The floor every other package stands on: the error tree, the wire formats between terminal, registry
and acquirer, and the pump and card types. It imports nothing of this project outside itself."""
