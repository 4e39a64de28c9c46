from vrfam_rt.cli import run

run()
