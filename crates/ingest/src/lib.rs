//! Turns what a gateway sends into exchanges: one adapter per format behind one trait.
