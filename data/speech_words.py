"""The 30 words (folders) of Google Speech Commands v0.01, and the ten digits the paper uses."""

WORDS = ("bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy", "house",
         "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six",
         "stop", "three", "tree", "two", "up", "wow", "yes", "zero")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
