//! Rights that follow the user, lock-idle sessions and smaller holes.
