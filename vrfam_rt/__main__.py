from vrfam_rt.cli import main

main(prog_name="vrfam-rt")
