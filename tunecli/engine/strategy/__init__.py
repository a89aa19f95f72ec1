"""What a trial tries and when it stops: the space, samplers, pruners, objectives, the grid."""
