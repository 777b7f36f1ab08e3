//! The apalis jobs: replay exchanges against candidates, judge them.
