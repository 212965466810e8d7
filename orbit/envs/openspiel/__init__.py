"""OpenSpiel self-play: the learner's side of a match as one chat trajectory."""
