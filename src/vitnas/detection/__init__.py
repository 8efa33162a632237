"""COCO-style transfer: object detection with a retrained ViT as the backbone.

compose: a detection set built from Fashion-MNIST items (PNGs + COCO instances JSON); torch-free.
dataset: a torch Dataset over any COCO-format folder.
model: ViTDet-style simple feature pyramid, torchvision RetinaNet / Faster R-CNN around it.
finetune: fine-tuning and COCOeval bbox AP.
"""
