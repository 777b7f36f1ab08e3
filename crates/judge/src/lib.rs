//! Rubric files rendered with minijinja into judge prompts, and judge answers parsed into scores.
