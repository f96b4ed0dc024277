// The SASRec plugin's sources live in this folder (see docs/plugin-guide.md for the ABI).
