// Imported first by benchmarks: the same quiet settings as the local story.
import "../cli/local/quiet.js";
