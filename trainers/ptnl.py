"""Registers PTNL's trainers (PTNL, FullPromptTuning, CLSTuning, ClassifierR, ClassifierC, TEncFT,
ZeroshotCLIP, LinearProbe, ImageNetFT, UPL, JoAPR, NLPrompt) in the active engine's registry."""
from ptnl.trainers import register_trainers

register_trainers()
