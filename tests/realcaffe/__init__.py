"""The real-Caffe tier: BVLC pycaffe (built by ../shared/caffe/build-caffe.sh) as the reference."""
